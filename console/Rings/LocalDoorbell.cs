using System.Runtime.CompilerServices;

namespace XenIo.Consoled.Rings;

/// <summary>
/// One end of an in-process event channel: <see cref="Notify"/> sets the peer's pending bit.
/// Both ends of a console live in one process in tests, benchmarks and a guest agent that serves
/// its own console; <see cref="CreatePair"/> gives the backend end and the frontend end.
/// </summary>
public sealed class LocalDoorbell : IConsoleDoorbell
{
    private readonly AsyncLatch _pending = new();
    private LocalDoorbell? _peer;

    private LocalDoorbell()
    {
    }

    public static (LocalDoorbell Backend, LocalDoorbell Frontend) CreatePair()
    {
        var backend = new LocalDoorbell();
        var frontend = new LocalDoorbell();
        backend._peer = frontend;
        frontend._peer = backend;
        return (backend, frontend);
    }

    public void Notify() => _peer!._pending.Set();

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask WaitAsync(CancellationToken cancellationToken) =>
        await _pending.WaitAsync(cancellationToken).ConfigureAwait(false);
}
