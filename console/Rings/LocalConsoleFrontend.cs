using XenIo.Hypervisor.Rings;

namespace XenIo.Consoled.Rings;

/// <summary>
/// A console whose guest end lives in this process: a console page, an in-process event channel and
/// async writes/reads on the guest side. Register <see cref="Page"/> and <see cref="BackendDoorbell"/>
/// with consoled. Used by tests and benchmarks, and by anything that wants a console without a guest.
/// </summary>
public sealed class LocalConsoleFrontend : IAsyncDisposable
{
    private readonly NativeConsolePage _page = new();
    private readonly LocalDoorbell _frontendDoorbell;
    private readonly ConsoleFrontendRing _ring;
    private readonly AsyncLatch _outputSpace = new();
    private readonly AsyncLatch _inputReady = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _dispatch;

    public LocalConsoleFrontend()
    {
        (BackendDoorbell, _frontendDoorbell) = LocalDoorbell.CreatePair();
        _ring = new ConsoleFrontendRing(_page.Address);
        _dispatch = Task.Run(DispatchAsync);
    }

    public nint Page => _page.Address;

    public IConsoleDoorbell BackendDoorbell { get; }

    // One event channel carries both directions; wake both waiters on every kick.
    private async Task DispatchAsync()
    {
        try
        {
            while (true)
            {
                await _frontendDoorbell.WaitAsync(_stop.Token).ConfigureAwait(false);
                _outputSpace.Set();
                _inputReady.Set();
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Sends an event to the backend, as a guest's <c>EVTCHNOP_send</c>.</summary>
    public void Kick() => _frontendDoorbell.Notify();

    /// <summary>Prints <paramref name="data"/> on the console, waiting while the ring is full.</summary>
    public async ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
    {
        while (!data.IsEmpty)
        {
            int n = _ring.WriteOutput(data.Span);
            if (n > 0)
            {
                data = data[n..];
                _frontendDoorbell.Notify();
                continue;
            }
            await WaitAsync(_outputSpace, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Reads what viewers typed, waiting until something arrives.</summary>
    public async ValueTask<int> ReadAsync(Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        while (true)
        {
            int n = _ring.ReadInput(destination.Span);
            if (n > 0)
            {
                _frontendDoorbell.Notify();
                return n;
            }
            await WaitAsync(_inputReady, cancellationToken).ConfigureAwait(false);
        }
    }

    private static async ValueTask WaitAsync(AsyncLatch latch, CancellationToken cancellationToken)
    {
        if (latch.TryConsume()) return;
        // The latch may have been consumed by an earlier pass; a short timeout re-checks the ring.
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(20);
        try
        {
            await latch.WaitAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _dispatch.ConfigureAwait(false);
        _page.Dispose();
        _stop.Dispose();
    }
}
