using System.Diagnostics;
using System.Runtime.CompilerServices;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Rings;

namespace XenIo.TestPeer.Rings;

/// <summary>
/// A netfront/netback-style exchange of netif tx requests and responses over a shared ring, each
/// payload derived from its sequence number so both ends can check every one. The front fills the
/// ring, pushes and notifies when asked, reaps responses and final-checks before sleeping; the back
/// drains requests, answers each, pushes, and final-checks before sleeping, as the Linux drivers do.
/// </summary>
public static class NetifTxExchange
{
    /// <summary>How long a side waits without any progress before it declares the other end gone.</summary>
    public const int StallMilliseconds = 20_000;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static NetifTxRequest Request(ulong seq) => new()
    {
        Gref = (uint)(seq * 2654435761UL),
        Offset = (ushort)(seq & 0xFFF),
        Flags = (NetTxFlags)(seq & 0xF),
        Id = (ushort)(seq * 7),
        Size = (ushort)(seq >> 5),
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static NetifTxResponse Response(ulong seq) => new() { Id = (ushort)(seq * 7), Status = (short)((long)(seq % 3) - 1) };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Matches(in NetifTxRequest r, ulong seq)
    {
        var e = Request(seq);
        return r.Gref == e.Gref && r.Offset == e.Offset && r.Flags == e.Flags && r.Id == e.Id && r.Size == e.Size;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Matches(in NetifTxResponse r, ulong seq)
    {
        var e = Response(seq);
        return r.Id == e.Id && r.Status == e.Status;
    }

    /// <summary>What one side saw.</summary>
    public record struct Result(ulong Done, ulong Mismatches, long Notifies, RingError Error, string? Failure, long WarmTicks, long EndTicks, ulong WarmCount)
    {
        public readonly bool Ok => Failure is null && Mismatches == 0 && Error == RingError.None;
        public readonly double SteadySeconds => (EndTicks - WarmTicks) / (double)Stopwatch.Frequency;
    }

    /// <summary>
    /// Produces <paramref name="count"/> requests and checks their responses. The clock starts after
    /// <paramref name="warm"/> responses so start-up and JIT are not measured.
    /// </summary>
    // Fully optimised from the first call: a benchmark must not measure on-stack replacement.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Result RunFront(ref FrontRing<NetifTxRequest, NetifTxResponse> ring, IRingNotifier notifier, ulong count, ulong warm = 0)
    {
        ulong sent = 0, done = 0, mismatches = 0;
        long notifies = 0, warmTicks = Stopwatch.GetTimestamp(), lastProgress = Environment.TickCount64;
        while (done < count)
        {
            bool produced = false;
            while (sent < count && ring.TryWriteRequest(Request(sent)))
            {
                sent++;
                produced = true;
            }
            if (produced && ring.PushRequests())
            {
                notifier.Notify();
                notifies++;
            }

            bool reaped = false;
            while (ring.TryConsumeResponse(out var rsp))
            {
                if (!Matches(rsp, done)) mismatches++;
                done++;
                reaped = true;
                if (done == warm) warmTicks = Stopwatch.GetTimestamp();
            }
            if (ring.IsBroken) return new(done, mismatches, notifies, ring.Error, "front ring broken", 0, 0, 0);
            if (reaped || produced)
            {
                lastProgress = Environment.TickCount64;
                continue;
            }
            if (ring.FinalCheckForResponses()) continue;
            if (!notifier.Wait(1000) && Environment.TickCount64 - lastProgress > StallMilliseconds)
                return new(done, mismatches, notifies, ring.Error, $"front stalled at {done}/{count} (sent {sent})", 0, 0, 0);
        }
        return new(done, mismatches, notifies, ring.Error, null, warmTicks, Stopwatch.GetTimestamp(), warm);
    }

    /// <summary>Consumes <paramref name="count"/> requests, checking each copy, and answers each.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Result RunBack(ref BackRing<NetifTxRequest, NetifTxResponse> ring, IRingNotifier notifier, ulong count)
    {
        ulong done = 0, mismatches = 0;
        long notifies = 0, lastProgress = Environment.TickCount64;
        while (done < count)
        {
            bool any = false;
            while (done < count && ring.TryConsumeRequest(out var req))
            {
                // Only the copy is checked and used: the front may rewrite the slot meanwhile.
                if (!Matches(req, done)) mismatches++;
                ring.TryWriteResponse(Response(done));
                done++;
                any = true;
            }
            if (any)
            {
                if (ring.PushResponses())
                {
                    notifier.Notify();
                    notifies++;
                }
                lastProgress = Environment.TickCount64;
                continue;
            }
            if (ring.IsBroken) return new(done, mismatches, notifies, ring.Error, "back ring broken", 0, 0, 0);
            if (ring.FinalCheckForRequests()) continue;
            if (!notifier.Wait(1000) && Environment.TickCount64 - lastProgress > StallMilliseconds)
                return new(done, mismatches, notifies, ring.Error, $"back stalled at {done}/{count}", 0, 0, 0);
        }
        return new(done, mismatches, notifies, ring.Error, null, 0, 0, 0);
    }
}
