using XenIo.Cli.Verbs;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Domains.Hyperd;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;
using XenIo.Hypervisor.Store.Transports;
using XenIo.Hypervisor.Daemons;
using Xunit;

namespace XenIo.Cli.Tests.Hyperd;

/// <summary><c>xenio up</c>'s autostart against a hyperd that starts no agents (no root): every good config boots, bad ones are reported.</summary>
[Collection("hyperd")]
public sealed class AutostartTests : IAsyncDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("xenio-auto-").FullName;
    private readonly CoreHost _host;
    private readonly XenstoreSocketListener _listener;
    private XenstoreClient? _dom0;
    private DomainManager? _manager;
    private UnixHttpServer? _server;

    public AutostartTests()
    {
        _host = new CoreHost(Path.Combine(_dir, "run"), budgetPages: 4096);
        _listener = new XenstoreSocketListener(new Xenstored(mapper: new XenstoreDomainMapper(_host)), XenstoreSocketListener.PathUnder(Path.Combine(_dir, "run")));
    }

    [Fact]
    public async Task Up_boots_every_config_in_the_autostart_directory_in_order_and_reports_the_bad_ones()
    {
        _dom0 = await XenstoreClient.ConnectAsync(_listener.SocketPath);
        _manager = new DomainManager(_host, _dom0, spawner: null);
        _server = new UnixHttpServer(HyperdClient.SocketUnder(Path.Combine(_dir, "run")), new HyperdApi(_manager).ServeAsync);
        using var client = new HyperdClient(_server.SocketPath);
        var auto = Directory.CreateDirectory(Path.Combine(_dir, "auto")).FullName;
        File.WriteAllText(Path.Combine(auto, "20-db.cfg"), "name = \"db\"\nmemory = 4\n");
        File.WriteAllText(Path.Combine(auto, "10-web.cfg"), "name = \"web\"\nmemory = 4\nvif = [ 'mac=00:16:3e:00:00:0a' ]\n");
        File.WriteAllText(Path.Combine(auto, "30-bad.cfg"), "name = \"bad\"\nmemory = \"lots\"\n");
        File.WriteAllText(Path.Combine(auto, "40-huge.cfg"), "name = \"huge\"\nmemory = 64\n");
        File.WriteAllText(Path.Combine(auto, "notes.txt"), "not a config");

        var output = new StringWriter();
        var result = await Autostart.BootAsync(client, auto, "br-lab", output);
        Assert.Equal(["web", "db"], result.Started);
        Assert.Equal([Path.Combine(auto, "30-bad.cfg"), Path.Combine(auto, "40-huge.cfg")], result.Failed);
        Assert.Contains("30-bad.cfg:2:", output.ToString());
        Assert.Contains("page pool is exhausted", output.ToString());
        Assert.Equal(["web", "db"], (await client.ListAsync()).Select(d => d.Name));
        Assert.Equal("br-lab", await _dom0.ReadAsync("/local/domain/0/backend/vif/1/0/bridge"));

        // A second up leaves running domains alone.
        var again = await Autostart.BootAsync(client, auto, "br-lab", new StringWriter());
        Assert.Empty(again.Started);
        Assert.Equal(2, (await client.ListAsync()).Count);
        // No directory, nothing to do.
        Assert.Empty((await Autostart.BootAsync(client, Path.Combine(_dir, "none"), "xenbr0", new StringWriter())).Started);
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
