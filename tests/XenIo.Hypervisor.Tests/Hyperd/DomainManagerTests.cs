using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Domains.Hyperd;
using XenIo.Hypervisor.Events;
using XenIo.Hypervisor.Memory;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;
using XenIo.Hypervisor.Store.Transports;
using Xunit;

namespace XenIo.Hypervisor.Tests.Hyperd;

/// <summary>
/// The toolstack core without agents (no root needed): what a created domain gets in the core and in
/// xenstore, what its guest sees over its own ring, and that destroy takes all of it back.
/// </summary>
public sealed class DomainManagerTests : IAsyncDisposable
{
    private const long BudgetPages = 4096; // 16 MiB

    private readonly string _dir = Path.Combine(Path.GetTempPath(), "xenio-dm-" + Guid.NewGuid().ToString("N")[..10]);
    private readonly CoreHost _host;
    private readonly Xenstored _daemon;
    private readonly XenstoreSocketListener _listener;
    private XenstoreClient? _dom0;
    private DomainManager? _manager;

    public DomainManagerTests()
    {
        _host = new CoreHost(_dir, BudgetPages);
        _daemon = new Xenstored(mapper: new XenstoreDomainMapper(_host));
        _listener = new XenstoreSocketListener(_daemon, XenstoreSocketListener.PathUnder(_dir));
    }

    private async Task<(DomainManager Manager, XenstoreClient Dom0)> StartAsync()
    {
        _dom0 = await XenstoreClient.ConnectAsync(_listener.SocketPath);
        _manager = new DomainManager(_host, _dom0, spawner: null);
        return (_manager, _dom0);
    }

    private string Image
    {
        get
        {
            var path = Path.Combine(_dir, "web.img");
            if (!File.Exists(path)) File.WriteAllBytes(path, new byte[4096]);
            return path;
        }
    }

    private DomainConfig Config(string name, long mib = 4) => new()
    {
        Name = name,
        MemoryMiB = mib,
        Vcpus = 2,
        Vifs = [new VifConfig { Devid = 0, Ip = "198.18.0.2/24" }, name == "web" ? new VifConfig { Devid = 1, Mac = "00:16:3e:01:02:03", Vifname = "web-out" } : new VifConfig { Devid = 1 }],
        Disks = [new DiskConfig { Target = Image, Vdev = "xvda", VirtualDevice = 51712 }],
    };

    /// <summary>Acts as the guest's kernel: its store ring over its own memory and the endpoint the toolstack kept for it.</summary>
    private static XenstoreClient GuestStore(DomainRecord d)
    {
        var page = PageMemory.TryCreate(d.Hosted.Memory, d.StoreFrame)!;
        var channel = new EventChannel(d.StorePort, (int)d.StoreEndpoint!.DangerousGetHandle());
        d.StoreEndpoint.SetHandleAsInvalid();
        d.StoreEndpoint = null;
        return XenstoreClient.OverRing(page.Memory, new EventChannelDoorbell(channel));
    }

    [Fact]
    public async Task A_created_domain_has_libxls_nodes_seeded_grants_and_its_pages()
    {
        var (manager, dom0) = await StartAsync();
        var web = await manager.CreateAsync(Config("web"));

        Assert.Equal(1, web.Domid);
        Assert.Equal(DomainState.Running, web.State);
        Assert.Equal(4 * 256, _host.Pool.UsedPages);
        Assert.True(_daemon.IsIntroduced(1));
        var dom = "/local/domain/1";
        Assert.Equal("web", await dom0.ReadAsync($"{dom}/name"));
        Assert.Equal("1", await dom0.ReadAsync($"{dom}/domid"));
        Assert.Equal("4096", await dom0.ReadAsync($"{dom}/memory/target"));
        Assert.Equal(web.StoreFrame.ToString(), await dom0.ReadAsync($"{dom}/store/ring-ref"));
        Assert.Equal(web.StorePort.ToString(), await dom0.ReadAsync($"{dom}/store/port"));
        Assert.Equal(web.ConsoleFrame.ToString(), await dom0.ReadAsync($"{dom}/console/ring-ref"));
        Assert.Equal(web.ConsolePort.ToString(), await dom0.ReadAsync($"{dom}/console/port"));
        Assert.NotEqual(web.StorePort, web.ConsolePort);
        Assert.Equal("online", await dom0.ReadAsync($"{dom}/cpu/1/availability"));

        // vifs: a generated MAC in Xen's OUI and vif<domid>.<devid>, or what the config said.
        var mac = await dom0.ReadAsync("/local/domain/0/backend/vif/1/0/mac");
        Assert.Matches("^00:16:3e:[0-7][0-9a-f]:[0-9a-f]{2}:[0-9a-f]{2}$", mac);
        Assert.Equal(mac, await dom0.ReadAsync($"{dom}/device/vif/0/mac"));
        Assert.Equal("vif1.0", await dom0.ReadAsync("/local/domain/0/backend/vif/1/0/vifname"));
        Assert.Equal("web-out", await dom0.ReadAsync("/local/domain/0/backend/vif/1/1/vifname"));
        Assert.Equal("00:16:3e:01:02:03", await dom0.ReadAsync("/local/domain/0/backend/vif/1/1/mac"));
        Assert.Equal(Image, await dom0.ReadAsync("/local/domain/0/backend/vbd/1/51712/params"));

        // Grant refs 0 and 1 give dom0 the console and store pages, right after the grant table.
        Assert.Equal(_host.Find(1)!.GrantFrames, web.ConsoleFrame);
        var console = web.Hosted.GrantTable.Read(DomainManager.ConsoleGrantRef);
        var store = web.Hosted.GrantTable.Read(DomainManager.XenstoreGrantRef);
        Assert.Equal((DomainIds.Dom0, web.ConsoleFrame), (console.Domid, console.Frame));
        Assert.Equal((DomainIds.Dom0, web.StoreFrame), (store.Domid, store.Frame));
        Assert.True(console.Flags.HasFlag(GrantFlags.PermitAccess));

        Assert.Equal([new DomainInfo { Name = "web", Domid = 1, MemoryMiB = 4, CurrentMiB = 4, MaxMemMiB = 4, Vcpus = 2, State = DomainState.Running, ConsoleEvtchn = web.ConsolePort }],
            manager.List().Select(i => i with { UptimeSeconds = 0, Uuid = null }));
    }

    [Fact]
    public async Task The_guest_sees_control_shutdown_and_mem_set_over_its_own_ring()
    {
        var (manager, dom0) = await StartAsync();
        var web = await manager.CreateAsync(Config("web", mib: 8) with { MaxMemMiB = 8, MemoryMiB = 6 });
        await using var guest = GuestStore(web);
        await using var watch = await guest.SubscribeAsync("control/shutdown");
        await guest.WriteAsync("data/agent", "running");
        Assert.Equal("running", await dom0.ReadAsync("/local/domain/1/data/agent"));

        await manager.ShutdownAsync("web", reboot: true);
        while (await guest.TryReadAsync("control/shutdown") != "reboot") await watch.Events.ReadAsync();
        await manager.MemSetAsync("1", 5);
        Assert.Equal("5120", await guest.ReadAsync("memory/target"));
        await Assert.ThrowsAsync<DomainException>(() => manager.MemSetAsync("web", 9));
        Assert.Equal(5, manager.List()[0].MemoryMiB);
    }

    [Fact]
    public async Task Duplicate_names_and_an_exhausted_pool_are_refused_clearly()
    {
        var (manager, _) = await StartAsync();
        await manager.CreateAsync(Config("a"));
        var dup = await Assert.ThrowsAsync<DomainException>(() => manager.CreateAsync(Config("a")));
        Assert.Equal(409, dup.Status);
        Assert.Contains("'a' exists", dup.Message);

        var full = await Assert.ThrowsAsync<DomainException>(() => manager.CreateAsync(Config("huge", mib: 64)));
        Assert.Equal(507, full.Status);
        Assert.Contains("page pool is exhausted", full.Message);
        // A refused domain leaves nothing: no id, no pages, no nodes.
        Assert.Single(manager.List());
        Assert.Equal(4 * 256, _host.Pool.UsedPages);
        Assert.Null(await _dom0!.TryReadAsync("/local/domain/2/name"));

        var bad = await Assert.ThrowsAsync<DomainException>(() => manager.CreateAsync(Config("../evil")));
        Assert.Equal(400, bad.Status);
        var b = await manager.CreateAsync(Config("b"));
        Assert.Equal(DomainState.Running, b.State);
        Assert.Equal(2, manager.List().Count);
    }

    [Fact]
    public async Task Destroy_takes_back_pages_ports_and_every_node_and_is_idempotent()
    {
        var (manager, dom0) = await StartAsync();
        var before = await dom0.DirectoryAsync("/local/domain");
        var web = await manager.CreateAsync(Config("web"));
        var uuid = web.Uuid;
        await manager.DestroyAsync("web");
        await manager.DestroyAsync(web);
        await Assert.ThrowsAsync<DomainException>(() => manager.DestroyAsync("web"));

        Assert.Empty(manager.List());
        Assert.Equal(0, _host.Pool.UsedPages);
        Assert.Null(_host.Find(1));
        Assert.False(_daemon.IsIntroduced(1));
        Assert.Equal(before, await dom0.DirectoryAsync("/local/domain"));
        Assert.Null(await dom0.TryReadAsync($"/vm/{uuid:D}"));
        Assert.Null(await dom0.TryReadAsync("/libxl/1"));
        Assert.Null(await dom0.TryReadAsync("/local/domain/0/backend/vif/1"));
        Assert.Null(await dom0.TryReadAsync("/local/domain/0/backend/vbd/1"));
        Assert.Null(await dom0.TryReadAsync("/local/domain/0/backend/console/1"));
        // The name is free again; the id moves on, as in Xen.
        Assert.Equal(2, (await manager.CreateAsync(Config("web"))).Domid);
    }

    /// <summary>Takes the domain as its own process would (a harness, an external frontend): memory and hypercall connection.</summary>
    private static GuestDomain AttachGuest(DomainRecord d)
    {
        var memory = d.Hosted.Memory.Duplicate();
        var hypercall = d.Hosted.TakeGuestEnd();
        int memFd = (int)memory.DangerousGetHandle(), hcFd = (int)hypercall.DangerousGetHandle();
        memory.SetHandleAsInvalid();
        hypercall.SetHandleAsInvalid();
        return GuestDomain.Attach(memFd, hcFd);
    }

    [Fact]
    public async Task An_agentless_domain_ends_by_its_shutdown_hypercall_or_crashes_when_its_connection_closes()
    {
        var (manager, dom0) = await StartAsync();
        var web = await manager.CreateAsync(Config("web") with { OnPoweroff = LifecycleAction.Destroy });
        var db = await manager.CreateAsync(Config("db") with { OnCrash = LifecycleAction.Preserve });
        using (var guest = AttachGuest(web))
        {
            Assert.Equal(web.Domid, guest.Domid);
            guest.Hypercalls.Shutdown(Hypervisor.Hypercalls.ShutdownReason.Poweroff);
            await web.Settled.WaitAsync(TimeSpan.FromSeconds(30));
        }
        Assert.Null(manager.Find("web"));
        Assert.Null(await dom0.TryReadAsync($"/local/domain/{web.Domid}"));

        AttachGuest(db).Dispose();
        await db.Settled.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(DomainState.Crashed, db.State);
        Assert.Equal(XenIo.Hypervisor.Domains.Spawn.ShutdownReason.Crash, db.ShutdownReason);
        // xl's preserve: kept, renamed with a time suffix and given a new /vm entry.
        var preserved = await dom0.ReadAsync($"/local/domain/{db.Domid}/name");
        Assert.Matches("^db-[0-9]{8}T[0-9]{4}Z$", preserved);
        Assert.Equal(preserved, await dom0.ReadAsync($"{await dom0.ReadAsync($"/local/domain/{db.Domid}/vm")}/name"));
        Assert.Equal((DomainState.Crashed, preserved), (Assert.Single(manager.List()).State, manager.List()[0].Name));
        Assert.Single(await dom0.DirectoryAsync("/vm"));
        await manager.DestroyAsync(db.Domid.ToString());
        Assert.Equal(0, _host.Pool.UsedPages);
    }

    [Fact]
    public async Task Rename_restart_keeps_the_old_domain_renamed_and_starts_a_new_one_under_its_name()
    {
        var (manager, dom0) = await StartAsync();
        var web = await manager.CreateAsync(Config("web", mib: 2) with { OnReboot = LifecycleAction.RenameRestart });
        using (var guest = AttachGuest(web))
        {
            guest.Hypercalls.Shutdown(Hypervisor.Hypercalls.ShutdownReason.Reboot);
            await web.Settled.WaitAsync(TimeSpan.FromSeconds(30));
        }
        var domains = manager.List();
        Assert.Equal(2, domains.Count);
        Assert.Matches("^web-[0-9]{8}T[0-9]{4}Z$", domains[0].Name);
        Assert.Equal((web.Domid, DomainState.Shutdown), (domains[0].Domid, domains[0].State));
        Assert.Equal(("web", DomainState.Running), (domains[1].Name, domains[1].State));
        Assert.Equal("web", await dom0.ReadAsync($"/local/domain/{domains[1].Domid}/name"));
        Assert.Equal(domains[0].Name, await dom0.ReadAsync($"/local/domain/{web.Domid}/name"));
        // The new domain got the configured MAC although the preserved one had it.
        Assert.Equal("00:16:3e:01:02:03", await dom0.ReadAsync($"/local/domain/0/backend/vif/{domains[1].Domid}/1/mac"));
        await manager.DestroyAsync(web.Domid.ToString());
        await manager.DestroyAsync("web");
        Assert.Equal(0, _host.Pool.UsedPages);
        Assert.Empty(await dom0.DirectoryAsync("/vm"));
    }

    [Theory]
    [InlineData("01:16:3e:00:00:01", null, 1500)]
    [InlineData("00:16:3e:00:00", null, 1500)]
    [InlineData("00-16-3e-00-00-01", null, 1500)]
    [InlineData(null, "a-very-long-ifname", 1500)]
    [InlineData(null, "bad/name", 1500)]
    [InlineData(null, null, 20)]
    public async Task Bad_vifs_are_refused_before_anything_is_allocated(string? mac, string? vifname, int mtu)
    {
        var (manager, dom0) = await StartAsync();
        var e = await Assert.ThrowsAsync<DomainException>(() => manager.CreateAsync(new DomainConfig
        {
            Name = "web", MemoryMiB = 4, Vifs = [new VifConfig { Mac = mac, Vifname = vifname, Mtu = mtu }],
        }));
        Assert.Equal(400, e.Status);
        Assert.Equal(0, _host.Pool.UsedPages);
        Assert.Empty(manager.List());
        Assert.Null(await dom0.TryReadAsync("/local/domain/1"));
    }

    public async ValueTask DisposeAsync()
    {
        if (_manager is not null) await _manager.DisposeAsync();
        if (_dom0 is not null) await _dom0.DisposeAsync();
        await _listener.DisposeAsync();
        _host.Dispose();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
