using XenIo.Consoled.Rings;
using XenIo.Hypervisor.Events;

namespace XenIo.Consoled.Domains;

/// <summary>
/// A guest console's event channel as consoled's doorbell. When the guest's end is gone (the guest
/// died, or consoled was restarted and the guest still holds the endpoint of the pair that closed),
/// no event can arrive any more: waits become a poll of the ring every <see cref="PollInterval"/>,
/// so a console picked up after a restart keeps working.
/// </summary>
public sealed class EventChannelConsoleDoorbell(IEventChannel channel) : IConsoleDoorbell
{
    public static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(20);

    public bool Polling => channel.PeerClosed;

    public void Notify() => channel.Notify();

    public async ValueTask WaitAsync(CancellationToken cancellationToken)
    {
        if (!channel.PeerClosed && await channel.WaitAsync(cancellationToken).ConfigureAwait(false)) return;
        await Task.Delay(PollInterval, cancellationToken).ConfigureAwait(false);
    }
}
