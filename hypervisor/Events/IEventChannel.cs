namespace XenIo.Hypervisor.Events;

/// <summary>
/// One end of a bound event channel as its user sees it. Notifications coalesce: many
/// <see cref="Notify"/> calls give the other end at least one wake-up, and a wake-up may be spurious,
/// so waiters re-check their ring after every wake-up. Notifying a closed or unbound channel does nothing.
/// </summary>
public interface IEventChannel
{
    /// <summary>The local port number.</summary>
    uint Port { get; }

    /// <summary>True once the other end has gone (closed its port or died).</summary>
    bool PeerClosed { get; }

    /// <summary><c>EVTCHNOP_send</c>: marks the remote port pending. Never blocks, never throws.</summary>
    void Notify();

    /// <summary>Waits until the port is pending and clears it. False when the peer has gone.</summary>
    ValueTask<bool> WaitAsync(CancellationToken cancellationToken = default);

    /// <summary>Waits up to <paramref name="timeoutMs"/> (-1: forever). True if pending (cleared) or the peer has gone; false on timeout.</summary>
    bool Wait(int timeoutMs);
}
