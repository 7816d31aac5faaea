using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Events;
using XenIo.Hypervisor.Hypercalls;
using XenIo.Hypervisor.Interop;
using XenIo.Hypervisor.Tests.Hypercalls;
using Xunit;

namespace XenIo.Hypervisor.Tests.Events;

/// <summary>Event channels through the hypercall protocol: a guest connection and dom0 clients, in-process.</summary>
public sealed class EventChannelTests : IDisposable
{
    private readonly CoreTestHost _t = new();

    private GuestDomain Guest(ushort domid)
    {
        var domain = _t.Host.CreateDomain(domid, $"d{domid}", frames: 64, grantFrames: 4);
        int memoryFd = Libc.fcntl((int)domain.Memory.Handle.DangerousGetHandle(), Libc.F_DUPFD_CLOEXEC, 0);
        using var end = domain.TakeGuestEnd();
        return GuestDomain.Attach(memoryFd, Libc.fcntl((int)end.DangerousGetHandle(), Libc.F_DUPFD_CLOEXEC, 0));
    }

    private HypercallClient Dom0() => HypercallClient.Connect(_t.Host.HypercallSocketPath);

    public void Dispose() => _t.Dispose();

    [Fact]
    public void Unbound_port_is_bindable_only_by_its_remote_and_bind_is_pending_once()
    {
        using var guest = Guest(1);
        using var other = Guest(2);
        using var dom0 = Dom0();
        using var port = guest.Hypercalls.AllocUnbound(DomainIds.Dom0);
        Assert.Equal((EventChannelStatus.Unbound, (ushort)0, 0u), guest.Hypercalls.Status(port.Port));

        var refused = Assert.Throws<HypercallException>(() => other.Hypercalls.BindInterdomain(1, port.Port));
        Assert.Equal(EventChannelTable.EINVAL, refused.Errno);
        Assert.Throws<HypercallException>(() => dom0.BindInterdomain(1, port.Port + 1));
        Assert.Throws<HypercallException>(() => dom0.BindInterdomain(9, port.Port));

        using var back = dom0.BindInterdomain(1, port.Port);
        Assert.Equal((EventChannelStatus.Interdomain, (ushort)0, back.Port), guest.Hypercalls.Status(port.Port));
        Assert.Equal((EventChannelStatus.Interdomain, (ushort)1, port.Port), dom0.Status(back.Port));
        // Pending once after bind; then nothing until notified.
        Assert.True(back.Wait(0));
        Assert.False(back.Wait(0));
        Assert.False(port.Wait(0));
        // Bound already: a second bind is refused.
        Assert.Throws<HypercallException>(() => dom0.BindInterdomain(1, port.Port));
    }

    [Fact]
    public async Task Notifications_go_both_ways_coalesce_and_are_awaitable()
    {
        using var guest = Guest(1);
        using var dom0 = Dom0();
        using var front = guest.Hypercalls.AllocUnbound(0);
        using var back = dom0.BindInterdomain(1, front.Port);
        Assert.True(back.Wait(0));

        for (int i = 0; i < 100_000; i++) front.Notify();
        Assert.True(back.Wait(5000));
        Assert.False(back.Wait(0)); // all coalesced into the one wake-up

        var waiting = front.WaitAsync().AsTask();
        back.Notify();
        Assert.True(await waiting.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.False(front.Poll());

        // A spurious extra wake-up is harmless: the waiter just finds nothing to do.
        back.Notify();
        back.Notify();
        Assert.True(front.Wait(5000));
        Assert.False(front.Wait(0));
    }

    [Fact]
    public async Task Close_returns_the_peer_to_unbound_and_it_sees_end_of_file()
    {
        using var guest = Guest(1);
        using var dom0 = Dom0();
        var front = guest.Hypercalls.AllocUnbound(0);
        var back = dom0.BindInterdomain(1, front.Port);
        dom0.Close(back.Port);
        back.Dispose();
        back.Notify(); // notifying a closed channel is a no-op
        Assert.False(await front.WaitAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.True(front.PeerClosed);
        front.Notify(); // and so is notifying one whose peer has gone
        Assert.Equal((EventChannelStatus.Unbound, (ushort)0, 0u), guest.Hypercalls.Status(front.Port));
        Assert.Equal(EventChannelStatus.Closed, dom0.Status(back.Port).Status);

        // Rebind: the guest takes its fresh endpoint; dom0 binds again and is pending once.
        front.Dispose();
        using var front2 = guest.Hypercalls.ReopenEndpoint(front.Port);
        using var back2 = dom0.BindInterdomain(1, front.Port);
        Assert.True(back2.Wait(0));
        back2.Notify();
        Assert.True(front2.Wait(5000));
        Assert.False(front2.PeerClosed);
    }

    /// <summary>
    /// A console or store port the toolstack allocated for the guest, whose backend dies and comes back
    /// (consoled restarted): the new backend binds before the guest notices; the guest then fetches its
    /// fresh end itself and events flow both ways again.
    /// </summary>
    [Fact]
    public void A_toolstack_port_is_fetched_again_by_its_domain_after_the_backend_rebound()
    {
        using var guest = Guest(1);
        int port = _t.Host.Events.AllocUnbound(1, EventChannelTable.ToolstackOwner, 0, out var handed);
        Assert.True(port > 0);
        using var front = new EventChannel((uint)port, Libc.fcntl((int)handed!.DangerousGetHandle(), Libc.F_DUPFD_CLOEXEC, 0));
        handed.Dispose();

        var backend = Dom0();
        var back = backend.BindInterdomain(1, (uint)port);
        back.Notify();
        Assert.True(front.Wait(5000));
        back.Dispose();
        backend.Dispose(); // the backend process dies: its ports close
        SpinWait.SpinUntil(() => { front.Wait(10); return front.PeerClosed; }, 5000);
        Assert.True(front.PeerClosed);

        using var backend2 = Dom0();
        using var back2 = backend2.BindInterdomain(1, (uint)port);
        Assert.True(back2.Wait(5000)); // pending once, as every bind

        using var front2 = guest.Hypercalls.ReopenEndpoint((uint)port);
        back2.Notify();
        Assert.True(front2.Wait(5000));
        front2.Notify();
        Assert.True(back2.Wait(5000));
        Assert.False(front2.PeerClosed);
        // Fetched once: the table let go of its copy.
        Assert.Throws<HypercallException>(() => guest.Hypercalls.ReopenEndpoint((uint)port));
    }

    [Fact]
    public void A_dom0_client_that_disconnects_closes_its_ports()
    {
        using var guest = Guest(1);
        using var front = guest.Hypercalls.AllocUnbound(0);
        var dom0 = Dom0();
        var back = dom0.BindInterdomain(1, front.Port);
        var other = Dom0();
        Assert.Equal(EventChannelTable.EPERM, Assert.Throws<HypercallException>(() => other.Close(back.Port)).Errno);
        dom0.Dispose();
        back.Dispose();
        Assert.True(front.Wait(10_000));
        Assert.True(front.PeerClosed);
        var deadline = Environment.TickCount64 + 10_000;
        while (guest.Hypercalls.Status(front.Port).Status != EventChannelStatus.Unbound && Environment.TickCount64 < deadline) Thread.Sleep(5);
        Assert.Equal(EventChannelStatus.Unbound, guest.Hypercalls.Status(front.Port).Status);
        other.Dispose();
    }

    [Fact]
    public void Status_of_unknown_ports()
    {
        using var guest = Guest(1);
        Assert.Equal(EventChannelStatus.Closed, guest.Hypercalls.Status(17).Status);
        Assert.Equal(EventChannelTable.EINVAL, Assert.Throws<HypercallException>(() => guest.Hypercalls.Status(0)).Errno);
        Assert.Equal(EventChannelTable.EINVAL, Assert.Throws<HypercallException>(() => guest.Hypercalls.Status(1_000_000)).Errno);
        Assert.Equal(EventChannelTable.EINVAL, Assert.Throws<HypercallException>(() => guest.Hypercalls.Close(5)).Errno);
    }

    [Fact]
    public void A_guest_cannot_hoard_unbound_ports()
    {
        using var guest = Guest(1);
        var ports = new List<EventChannel>();
        for (int i = 0; i < EventChannelTable.MaxUnboundPorts; i++) ports.Add(guest.Hypercalls.AllocUnbound(0));
        Assert.Equal(EventChannelTable.ENOSPC, Assert.Throws<HypercallException>(() => guest.Hypercalls.AllocUnbound(0)).Errno);
        guest.Hypercalls.Close(ports[0].Port);
        ports.Add(guest.Hypercalls.AllocUnbound(0));
        foreach (var p in ports) p.Dispose();
    }
}
