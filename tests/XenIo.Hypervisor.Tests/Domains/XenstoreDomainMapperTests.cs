using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Events;
using XenIo.Hypervisor.Memory;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;
using XenIo.Hypervisor.Store.Transports;
using Xunit;

namespace XenIo.Hypervisor.Tests.Domains;

/// <summary>
/// xenstored serving a guest introduced by the toolstack: its store page is a frame of the domain's
/// real memory and the doorbell an event channel bound through hyperd's table, as in Xen.
/// </summary>
public sealed class XenstoreDomainMapperTests : IAsyncDisposable
{
    private const ushort Domid = 5;
    private const uint StoreFrame = 10;
    private const long GuestOwner = 77;

    private readonly string _dir = Path.Combine(Path.GetTempPath(), "xenio-mapper-" + Guid.NewGuid().ToString("N")[..10]);
    private readonly CoreHost _host;
    private readonly HostedDomain _domain;
    private readonly Xenstored _daemon;
    private readonly XenstoreSocketListener _listener;

    public XenstoreDomainMapperTests()
    {
        _host = new CoreHost(_dir, budgetPages: 1024);
        _domain = _host.CreateDomain(Domid, "guest", frames: 64, grantFrames: 4);
        _daemon = new Xenstored(mapper: new XenstoreDomainMapper(_host));
        _listener = new XenstoreSocketListener(_daemon, XenstoreSocketListener.PathUnder(_dir));
    }

    /// <summary>The guest's side of the store port: allocated unbound for dom0, as the guest's kernel would.</summary>
    private (uint Port, EventChannel Channel) GuestStorePort()
    {
        int port = _host.Events.AllocUnbound(Domid, GuestOwner, 0, out var endpoint);
        Assert.True(port > 0, $"alloc_unbound failed: {port}");
        var channel = new EventChannel((uint)port, (int)endpoint!.DangerousGetHandle());
        endpoint.SetHandleAsInvalid();
        return ((uint)port, channel);
    }

    [Fact]
    public async Task An_introduced_guest_is_served_on_its_own_memory_and_event_channel()
    {
        await using var dom0 = await XenstoreClient.ConnectAsync(_listener.SocketPath);
        var (port, channel) = GuestStorePort();
        await dom0.IntroduceAsync(Domid, StoreFrame, port);

        var page = PageMemory.TryCreate(_domain.Memory, StoreFrame)!;
        await using var guest = XenstoreClient.OverRing(page.Memory, new EventChannelDoorbell(channel));
        await guest.WriteAsync("data/greeting", "hello from the ring");

        Assert.Equal("hello from the ring", await dom0.ReadAsync($"/local/domain/{Domid}/data/greeting"));
        Assert.Equal([new XenstorePermission(Domid, XenstoreAccess.None)], await dom0.GetPermsAsync($"/local/domain/{Domid}/data/greeting"));
        // The bytes really crossed the domain's memory: the request ring's producer moved.
        Assert.NotEqual(0u, BitConverter.ToUInt32(_domain.Memory.Page(StoreFrame)[XenIo.Hypervisor.Abi.XenstoreDomainInterface.ReqProdOffset..]));

        // Its identity is the ring: dom0's private nodes stay out of reach.
        await dom0.WriteAsync("/local/domain/0/secret", "dom0 only");
        var e = await Assert.ThrowsAsync<XenstoreException>(() => guest.ReadAsync("/local/domain/0/secret"));
        Assert.Equal(XsError.EACCES, e.Error);
        await dom0.ReleaseAsync(Domid);
    }

    [Fact]
    public async Task A_store_frame_inside_the_grant_table_or_outside_memory_is_refused()
    {
        await using var dom0 = await XenstoreClient.ConnectAsync(_listener.SocketPath);
        var (port, channel) = GuestStorePort();
        using var _ = channel;
        await Assert.ThrowsAsync<XenstoreException>(() => dom0.IntroduceAsync(Domid, 1, port));
        await Assert.ThrowsAsync<XenstoreException>(() => dom0.IntroduceAsync(Domid, 64, port));
        await Assert.ThrowsAsync<XenstoreException>(() => dom0.IntroduceAsync(Domid, 1UL << 40, port));
        Assert.False(_daemon.IsIntroduced(Domid));
    }

    [Fact]
    public async Task A_port_not_offered_to_dom0_or_an_unknown_domain_is_refused()
    {
        await using var dom0 = await XenstoreClient.ConnectAsync(_listener.SocketPath);
        await Assert.ThrowsAsync<XenstoreException>(() => dom0.IntroduceAsync(Domid, StoreFrame, 999));
        // A port the guest allocated for another domain cannot be bound by dom0.
        int other = _host.Events.AllocUnbound(Domid, GuestOwner, 9, out var endpoint);
        endpoint!.Dispose();
        await Assert.ThrowsAsync<XenstoreException>(() => dom0.IntroduceAsync(Domid, StoreFrame, (uint)other));
        await Assert.ThrowsAsync<XenstoreException>(() => dom0.IntroduceAsync(42, StoreFrame, 1));
    }

    public async ValueTask DisposeAsync()
    {
        await _listener.DisposeAsync();
        _host.Dispose();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
