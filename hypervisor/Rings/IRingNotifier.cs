namespace XenIo.Hypervisor.Rings;

/// <summary>
/// The doorbell beside a shared ring: an event channel in XenIo, a pipe or datagram socket in tests
/// and benchmarks. Notifications coalesce like an event channel's pending bit: several
/// <see cref="Notify"/> calls before a <see cref="Wait"/> may wake it once.
/// </summary>
public interface IRingNotifier
{
    /// <summary>Tells the other end that the ring has new work (the <c>notify</c> of <c>RING_PUSH_*_AND_CHECK_NOTIFY</c>).</summary>
    void Notify();

    /// <summary>Blocks until the other end notifies or <paramref name="timeoutMilliseconds"/> pass (-1: forever); true when notified.</summary>
    bool Wait(int timeoutMilliseconds);
}
