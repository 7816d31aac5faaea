using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Domains.Hyperd;
using XenIo.Hypervisor.Domains.Toolstack;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;
using XenIo.Hypervisor.Store.Transports;
using XenIo.Hypervisor.Daemons;
using Xunit;

namespace XenIo.Hypervisor.Tests.Hyperd;

/// <summary>
/// Devices on a running domain through hyperd's API (no agent, no root): network-attach and
/// block-attach write exactly libxl's nodes, refusals are checked as at create, detach runs libxl's
/// close handshake (online=0, Closing, wait for Closed) then removes the nodes; rename, sysrq and info.
/// </summary>
public sealed class DeviceHotplugTests : IAsyncDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "xenio-hotplug-" + Guid.NewGuid().ToString("N")[..10]);
    private readonly CoreHost _host;
    private readonly XenstoreSocketListener _listener;
    private XenstoreClient? _dom0;
    private DomainManager? _manager;
    private UnixHttpServer? _server;

    public DeviceHotplugTests()
    {
        _host = new CoreHost(_dir, budgetPages: 4096);
        _listener = new XenstoreSocketListener(new Xenstored(mapper: new XenstoreDomainMapper(_host)), XenstoreSocketListener.PathUnder(_dir));
    }

    private async Task<(HyperdClient Client, XenstoreClient Dom0)> StartAsync()
    {
        _dom0 = await XenstoreClient.ConnectAsync(_listener.SocketPath);
        _manager = new DomainManager(_host, _dom0, spawner: null);
        _server = new UnixHttpServer(HyperdClient.SocketUnder(_dir), new HyperdApi(_manager).ServeAsync);
        var client = new HyperdClient(_server.SocketPath);
        await client.CreateAsync(new DomainConfig { Name = "web", MemoryMiB = 4, Vifs = [new VifConfig { Mac = "00:16:3e:00:00:01" }] });
        return (client, _dom0);
    }

    private string Image(string name, bool readOnly = false)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, new byte[65536]);
        return path;
    }

    /// <summary>Every node under <paramref name="root"/> with its value and permissions, for comparing layouts.</summary>
    private static async Task<SortedDictionary<string, string>> TreeAsync(XenstoreClient c, string root)
    {
        var tree = new SortedDictionary<string, string>(StringComparer.Ordinal);
        async Task Walk(string path)
        {
            var perms = string.Join(' ', (await c.GetPermsAsync(path)).Select(p => p.ToString()));
            tree[path] = $"{await c.TryReadAsync(path)} [{perms}]";
            foreach (var child in await c.DirectoryAsync(path)) await Walk($"{path}/{child}");
        }
        if (await c.TryReadAsync(root) is not null) await Walk(root);
        return tree;
    }

    [Fact]
    public async Task Network_attach_writes_libxls_nodes_with_the_next_devid_and_network_list_shows_it()
    {
        var (client, dom0) = await StartAsync();
        var added = await client.AttachVifAsync("web", new VifConfig { Devid = -1, Bridge = "xenbr0", Ip = "198.18.0.9/24", Mtu = 9000 });
        Assert.Equal(1, added.Devid);
        Assert.Matches("^00:16:3e:", added.Mac);
        Assert.Equal("vif1.1", added.Vifname);

        // The same steps libxl's layout gives, applied to an empty store, yield the same tree.
        var expected = XenstoreLayout.Vif(1, new VifConfig { Devid = 1, Bridge = "xenbr0", Ip = "198.18.0.9/24", Mtu = 9000 }, added.Mac!, "vif1.1");
        await using (var other = new XenstoreSocketListener(new Xenstored(), Path.Combine(_dir, "other.sock")))
        await using (var fresh = await XenstoreClient.ConnectAsync(other.SocketPath))
        {
            await fresh.MkdirAsync("/local/domain/1");
            await XenstoreLayoutWriter.ApplyAsync(fresh, expected);
            foreach (var root in new[] { "/local/domain/1/device/vif/1", "/local/domain/0/backend/vif/1/1", "/libxl/1/device/vif/1" })
                Assert.Equal(await TreeAsync(fresh, root), await TreeAsync(dom0, root));
        }
        Assert.Equal("1", await dom0.ReadAsync("/local/domain/0/backend/vif/1/1/state"));
        Assert.Equal("198.18.0.9/24", await dom0.ReadAsync("/local/domain/0/backend/vif/1/1/ip"));

        var list = await client.ListDevicesAsync("web", "vif");
        Assert.Equal([0, 1], list.Select(v => v.Devid));
        Assert.Equal(("00:16:3e:00:00:01", 1, -1, "/local/domain/0/backend/vif/1/0"),
            (list[0].Mac, list[0].State, list[0].EventChannel, list[0].BackendPath));
        // What the frontend publishes shows up as it does in xl network-list.
        await dom0.WriteAsync("/local/domain/1/device/vif/0/event-channel", "7");
        await dom0.WriteAsync("/local/domain/1/device/vif/0/tx-ring-ref", "768");
        var again = (await client.ListDevicesAsync("1", "vif"))[0];
        Assert.Equal((7, 768, -1), (again.EventChannel, again.TxRingRef, again.RxRingRef));
    }

    [Fact]
    public async Task Network_attach_refuses_what_create_refuses()
    {
        var (client, dom0) = await StartAsync();
        var mac = await Assert.ThrowsAsync<DomainException>(() => client.AttachVifAsync("web", new VifConfig { Mac = "00:16:3E:00:00:01" }));
        Assert.Equal(409, mac.Status);
        Assert.Contains("in use by domain 'web'", mac.Message);
        var bad = await Assert.ThrowsAsync<DomainException>(() => client.AttachVifAsync("web", new VifConfig { Vifname = "no/slash" }));
        Assert.Equal(400, bad.Status);
        await client.AttachVifAsync("web", new VifConfig { Vifname = "web-a" });
        var dupName = await Assert.ThrowsAsync<DomainException>(() => client.AttachVifAsync("web", new VifConfig { Vifname = "web-a" }));
        Assert.Equal(409, dupName.Status);

        // Once netback publishes its bridges, a vif must name one of them.
        await dom0.WriteAsync("/xenio/switch/xenbr0/stp", "off");
        var bridge = await Assert.ThrowsAsync<DomainException>(() => client.AttachVifAsync("web", new VifConfig { Bridge = "br-nope" }));
        Assert.Equal(400, bridge.Status);
        Assert.Contains("no such bridge; netback serves xenbr0", bridge.Message);
        var atCreate = await Assert.ThrowsAsync<DomainException>(() => client.CreateAsync(new DomainConfig
        {
            Name = "db", MemoryMiB = 4, Vifs = [new VifConfig { Bridge = "br-nope" }],
        }));
        Assert.Equal(400, atCreate.Status);
        Assert.Equal(2, (await client.ListDevicesAsync("web", "vif")).Count);
        var missing = await Assert.ThrowsAsync<DomainException>(() => client.AttachVifAsync("nope", new VifConfig()));
        Assert.Equal(404, missing.Status);
    }

    [Fact]
    public async Task Block_attach_checks_the_target_and_format_and_writes_the_vbd()
    {
        var (client, dom0) = await StartAsync();
        var gone = await Assert.ThrowsAsync<DomainException>(() =>
            client.AttachDiskAsync("web", new DiskConfig { Target = Path.Combine(_dir, "none.img"), Vdev = "xvdb", VirtualDevice = 51728 }));
        Assert.Equal(400, gone.Status);
        Assert.Contains("does not exist", gone.Message);
        var qcow = await Assert.ThrowsAsync<DomainException>(() =>
            client.AttachDiskAsync("web", new DiskConfig { Target = Image("q.img"), Format = DiskFormat.Qcow2, Vdev = "xvdb", VirtualDevice = 51728 }));
        Assert.Contains("format=qcow2", qcow.Message);
        var relative = await Assert.ThrowsAsync<DomainException>(() =>
            client.AttachDiskAsync("web", new DiskConfig { Target = "disk.img", Vdev = "xvdb", VirtualDevice = 51728 }));
        Assert.Equal(400, relative.Status);
        Assert.Null(await dom0.TryReadAsync("/local/domain/0/backend/vbd/1"));

        var image = Image("data.img");
        var added = await client.AttachDiskAsync("web", new DiskConfig { Target = image, Vdev = "xvdb", VirtualDevice = 51728, ReadOnly = true });
        Assert.Equal((51728, "xvdb", "r"), (added.Devid, added.Vdev, added.Mode));
        var be = "/local/domain/0/backend/vbd/1/51728";
        Assert.Equal(image, await dom0.ReadAsync($"{be}/params"));
        Assert.Equal("r", await dom0.ReadAsync($"{be}/mode"));
        Assert.Equal("51728", await dom0.ReadAsync("/local/domain/1/device/vbd/51728/virtual-device"));
        Assert.Equal(be, await dom0.ReadAsync("/libxl/1/device/vbd/51728/backend"));
        var twice = await Assert.ThrowsAsync<DomainException>(() => client.AttachDiskAsync("web", new DiskConfig { Target = image, Vdev = "xvdb", VirtualDevice = 51728 }));
        Assert.Equal(409, twice.Status);
        var listed = Assert.Single(await client.ListDevicesAsync("web", "vbd"));
        Assert.Equal((51728, 1, 1, be), (listed.Devid, listed.FrontendId, listed.State, listed.BackendPath));
    }

    [Fact]
    public async Task Detach_closes_the_backend_waits_for_closed_then_removes_every_node()
    {
        var (client, dom0) = await StartAsync();
        await client.AttachDiskAsync("web", new DiskConfig { Target = Image("d.img"), Vdev = "xvdb", VirtualDevice = 51728 });
        var be = "/local/domain/0/backend/vbd/1/51728";
        await dom0.WriteAsync($"{be}/state", "4");

        // A backend that behaves: seeing online=0 and Closing, it closes.
        await using var backend = await XenstoreClient.ConnectAsync(_listener.SocketPath);
        await using var watch = await backend.SubscribeAsync($"{be}/state");
        var seen = new List<string>();
        var behaving = Task.Run(async () =>
        {
            while (true)
            {
                await watch.Events.ReadAsync();
                var state = await backend.TryReadAsync($"{be}/state");
                if (state is null) return;
                seen.Add($"{state}/{await backend.TryReadAsync($"{be}/online")}");
                if (state == "5")
                {
                    await backend.WriteAsync($"{be}/state", "6");
                    return;
                }
            }
        });
        Assert.False(await client.DetachAsync("web", "vbd", "xvdb"));
        await behaving;
        Assert.Contains("5/0", seen);
        Assert.Null(await dom0.TryReadAsync(be));
        Assert.Null(await dom0.TryReadAsync("/local/domain/1/device/vbd/51728"));
        Assert.Null(await dom0.TryReadAsync("/libxl/1/device/vbd/51728"));
        Assert.Empty(await client.ListDevicesAsync("web", "vbd"));
        Assert.Equal(404, (await Assert.ThrowsAsync<DomainException>(() => client.DetachAsync("web", "vbd", "xvdb"))).Status);
    }

    [Fact]
    public async Task Detach_without_a_backend_times_out_into_a_forced_removal_and_force_skips_the_wait()
    {
        var (client, dom0) = await StartAsync();
        await client.AttachVifAsync("web", new VifConfig { Mac = "00:16:3e:00:00:02" });
        // Nobody serves the vif: after the timeout the nodes go anyway, as libxl's forced remove.
        Assert.True(await client.DetachAsync("web", "vif", "00:16:3E:00:00:02", timeoutSeconds: 1));
        Assert.Null(await dom0.TryReadAsync("/local/domain/0/backend/vif/1/1"));
        Assert.True(await client.DetachAsync("web", "vif", "0", force: true));
        Assert.Null(await dom0.TryReadAsync("/local/domain/1/device/vif/0"));
        Assert.Null(await dom0.TryReadAsync("/libxl/1/device/vif/0"));
        Assert.Empty(await client.ListDevicesAsync("web", "vif"));
        // The MAC is free again.
        await client.AttachVifAsync("web", new VifConfig { Mac = "00:16:3e:00:00:02" });
    }

    [Fact]
    public async Task Rename_sysrq_and_info()
    {
        var (client, dom0) = await StartAsync();
        await client.RenameAsync("web", "www");
        Assert.Equal("www", await dom0.ReadAsync("/local/domain/1/name"));
        var vm = await dom0.ReadAsync("/local/domain/1/vm");
        Assert.Equal("www", await dom0.ReadAsync($"{vm}/name"));
        Assert.Equal("www", Assert.Single(await client.ListAsync()).Name);
        await client.CreateAsync(new DomainConfig { Name = "db", MemoryMiB = 4 });
        Assert.Equal(409, (await Assert.ThrowsAsync<DomainException>(() => client.RenameAsync("www", "db"))).Status);
        Assert.Equal(400, (await Assert.ThrowsAsync<DomainException>(() => client.RenameAsync("www", "../x"))).Status);

        await client.SysrqAsync("www", "b");
        Assert.Equal("b", await dom0.ReadAsync("/local/domain/1/control/sysrq"));
        Assert.Equal(400, (await Assert.ThrowsAsync<DomainException>(() => client.SysrqAsync("www", "bb"))).Status);

        var info = await client.InfoAsync();
        Assert.Equal((16L, 8L, 4096L, 2048L, 2), (info.TotalMemoryMiB, info.FreeMemoryMiB, info.TotalPages, info.FreePages, info.Domains));
        await client.DestroyAsync("db");
        Assert.Equal(12, (await client.InfoAsync()).FreeMemoryMiB);

        // consoled's published port shows in the listing; absent, there is none.
        Assert.Null(Assert.Single(await client.ListAsync()).ConsolePort);
        await dom0.WriteAsync("/local/domain/1/console/telnet-port", "4567");
        Assert.Equal(4567, Assert.Single(await client.ListAsync()).ConsolePort);
    }

    public async ValueTask DisposeAsync()
    {
        if (_server is not null) await _server.DisposeAsync();
        if (_manager is not null) await _manager.DisposeAsync();
        if (_dom0 is not null) await _dom0.DisposeAsync();
        await _listener.DisposeAsync();
        _host.Dispose();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}

public class DomainConfigJsonTests
{
    [Fact]
    public void Omitted_keys_keep_their_defaults()
    {
        var c = System.Text.Json.JsonSerializer.Deserialize("{\"name\":\"x\",\"vifs\":[{}],\"disks\":[{\"vdev\":\"xvda\"}]}", DomainConfigJson.Default.DomainConfig)!;
        Assert.Equal((128L, 1, "/bin/sh", "xenbr0", 1500), (c.MemoryMiB, c.Vcpus, c.Init[0], c.Vifs[0].Bridge, c.Vifs[0].Mtu));
        Assert.True(c.Disks[0].Discard);
    }
}
