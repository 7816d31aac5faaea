using System.Diagnostics.CodeAnalysis;

namespace XenIo.Hypervisor.Store.Transports;

/// <summary>
/// One end of an event channel as the xenstore ring needs it: notify the other end, wait for its kick.
/// hyperd implements it over its event channel file descriptors; tests use <see cref="InMemoryDoorbell"/>.
/// </summary>
public interface IEventChannelDoorbell : IDisposable
{
    /// <summary>Kicks the remote end (EVTCHNOP_send).</summary>
    void Notify();

    /// <summary>Completes with true when the remote end has kicked since the last wait, false once closed.</summary>
    ValueTask<bool> WaitAsync(CancellationToken cancellationToken);
}

/// <summary>A guest's xenstore ring as mapped for the daemon: the page, its bound event channel, and what to release.</summary>
public sealed class XenstoreDomainRing(Memory<byte> page, IEventChannelDoorbell doorbell, IDisposable? mapping = null) : IDisposable
{
    public Memory<byte> Page { get; } = page.Length >= Abi.XenstoreDomainInterface.ErrorOffset + sizeof(uint)
        ? page
        : throw new ArgumentException("a xenstore ring page needs at least 2076 bytes", nameof(page));
    public IEventChannelDoorbell Doorbell { get; } = doorbell;

    public void Dispose()
    {
        Doorbell.Dispose();
        mapping?.Dispose();
    }
}

/// <summary>
/// What hyperd provides for XS_INTRODUCE: map domain <c>domid</c>'s xenstore page (gfn) and bind its
/// event channel port, so the guest's identity comes from the ring it talks on and cannot be forged.
/// </summary>
public interface IXenstoreDomainMapper
{
    bool TryMap(ushort domId, ulong gfn, uint remotePort, [NotNullWhen(true)] out XenstoreDomainRing? ring);
}

/// <summary>A pair of in-process doorbells: a notify on one wakes the other (tests, in-process guests).</summary>
public sealed class InMemoryDoorbell : IEventChannelDoorbell
{
    private readonly AsyncSignal _kicked = new();
    private InMemoryDoorbell? _peer;
    private int _notifications;

    private InMemoryDoorbell() { }

    public static (InMemoryDoorbell Daemon, InMemoryDoorbell Guest) CreatePair()
    {
        var a = new InMemoryDoorbell();
        var b = new InMemoryDoorbell();
        a._peer = b;
        b._peer = a;
        return (a, b);
    }

    /// <summary>How many times this end has notified its peer (tests count notifications).</summary>
    public int Notifications => Volatile.Read(ref _notifications);

    public void Notify()
    {
        Interlocked.Increment(ref _notifications);
        _peer?._kicked.Set();
    }

    public ValueTask<bool> WaitAsync(CancellationToken cancellationToken) => _kicked.WaitAsync();

    public void Dispose()
    {
        _kicked.Close();
        _peer?._kicked.Close();
    }
}
