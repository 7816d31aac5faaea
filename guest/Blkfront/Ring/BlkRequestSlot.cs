using System.Threading.Tasks.Sources;
using XenIo.Hypervisor.Abi;

namespace XenIo.Guest.Blkfront.Ring;

/// <summary>
/// One outstanding blkif request of blkfront (Linux's <c>blk_shadow</c>): the request as sent (kept to
/// resubmit it after a backend restart), the data pages granted to the backend once and reused
/// (persistent grants), the indirect page, and a reusable awaitable for its status: nothing is allocated
/// per request once a slot has its pages.
/// </summary>
public sealed class BlkRequestSlot : IValueTaskSource<short>
{
    private ManualResetValueTaskSourceCore<short> _core = new() { RunContinuationsAsynchronously = false };

    public BlkRequestSlot(int index, int queue, int maxPages)
    {
        Index = index;
        Queue = queue;
        Frames = new uint[maxPages];
        Grefs = new uint[maxPages];
    }

    /// <summary>The request id on the ring.</summary>
    public int Index { get; }

    /// <summary>Which queue's ring it goes on (fixed: each queue owns a ring's worth of slots).</summary>
    public int Queue { get; }

    /// <summary>Data pages granted so far (grown on demand, kept for the device's life).</summary>
    public int PageCount { get; set; }

    public uint[] Frames { get; }

    public uint[] Grefs { get; }

    public uint IndirectFrame { get; set; }

    public uint IndirectGref { get; set; }

    public bool HasIndirect { get; set; }

    /// <summary>The request as written on the ring (a normal or an indirect one: same 112 bytes).</summary>
    public BlkifRequest Request;

    /// <summary>Sent and not yet answered: resubmitted after a reconnect.</summary>
    public bool InFlight { get; set; }

    public ValueTask<short> Wait() => new(this, _core.Version);

    public void Reset() => _core.Reset();

    public void Complete(short status) => _core.SetResult(status);

    short IValueTaskSource<short>.GetResult(short token) => _core.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource<short>.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource<short>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
