using System.Runtime.CompilerServices;
using System.Threading.Channels;

namespace XenIo.Consoled;

/// <summary>
/// An auto-reset signal that can be awaited without allocating: Set latches one pending wake-up
/// (more Sets before the wait coalesce), WaitAsync consumes it. A one-slot channel that drops extra
/// writes is exactly that, with ValueTask waits.
/// </summary>
public sealed class AsyncLatch
{
    private readonly Channel<bool> _channel = Channel.CreateBounded<bool>(new BoundedChannelOptions(1)
    {
        FullMode = BoundedChannelFullMode.DropWrite,
        SingleReader = false,
        SingleWriter = false,
    });

    public void Set() => _channel.Writer.TryWrite(true);

    /// <summary>Consumes a pending wake-up without waiting; false if there was none.</summary>
    public bool TryConsume() => _channel.Reader.TryRead(out _);

    /// <summary>Returns false once the latch is closed. Pooled: a wait that suspends allocates nothing.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<bool> WaitAsync(CancellationToken cancellationToken)
    {
        if (_channel.Reader.TryRead(out _)) return true;
        if (!await _channel.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false)) return false;
        _channel.Reader.TryRead(out _);
        return true;
    }

    /// <summary>Makes every current and future wait return false.</summary>
    public void Close() => _channel.Writer.TryComplete();
}
