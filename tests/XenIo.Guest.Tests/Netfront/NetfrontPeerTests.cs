using System.Diagnostics;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Domains.Cgroups;
using XenIo.Hypervisor.Domains.Hyperd;
using XenIo.Hypervisor.Domains.Spawn;
using XenIo.Hypervisor.Domains.Toolstack;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;
using XenIo.Hypervisor.Store.Transports;
using XenIo.Tests;
using Xunit;

namespace XenIo.Guest.Tests.Netfront;

/// <summary>
/// Two real agents created by hyperd's toolstack with one vif each, and a minimal netback in another
/// process (tests/XenIo.TestPeer/Netfront) that maps their rings and forwards between them with grant
/// copy: ping and a TCP stream (GSO frames across many slots) go guest to guest through netfront, and
/// after the backend is killed with SIGKILL and started again both guests reconnect by themselves.
/// </summary>
[Collection("guests")]
public sealed class NetfrontPeerTests(Xunit.Abstractions.ITestOutputHelper log) : IAsyncDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    private readonly string _dir = Path.Combine(Path.GetTempPath(), "xenio-netfront-" + Guid.NewGuid().ToString("N")[..10]);
    private readonly KernelNames _names = GuestHarness.Names("nf");
    private readonly CgroupLayout _layout = CgroupLayout.Detect();
    private readonly List<Process> _peers = [];
    private CoreHost? _host;
    private Xenstored? _daemon;
    private XenstoreSocketListener? _listener;
    private XenstoreClient? _dom0;
    private DomainManager? _manager;

    private async Task<(DomainManager Manager, XenstoreClient Dom0)> StartAsync()
    {
        Requires.Root();
        Requires.Tool("unshare");
        Requires.Tool("ip");
        Requires.Tool("ping");
        Requires.Tool("iperf3");
        Directory.CreateDirectory(_dir);
        _host = new CoreHost(_dir, budgetPages: 1L << 20);
        _daemon = new Xenstored(mapper: new XenstoreDomainMapper(_host));
        _listener = new XenstoreSocketListener(_daemon, XenstoreSocketListener.PathUnder(_dir));
        _dom0 = await XenstoreClient.ConnectAsync(_listener.SocketPath);
        _manager = new DomainManager(_host, _dom0, new AgentSpawner(_layout, _names), new DomainManagerOptions
        {
            AgentCommand = GuestHarness.AgentCommand,
            HiddenPaths = [_dir],
            LogDirectory = _dir,
            StopTimeoutMs = 2000,
        });
        return (_manager, _dom0);
    }

    private static DomainConfig Guest(string name, string mac, string ip) => new()
    {
        Name = name,
        MemoryMiB = 64,
        Init = ["/bin/sleep", "1000"],
        Vifs = [new VifConfig { Devid = 0, Mac = mac, Ip = ip }],
    };

    private async Task UntilAsync(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTime.UtcNow + Limit;
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"waited {Limit.TotalSeconds} s for {what}; logs:\n{Logs()}");
            await Task.Delay(20);
        }
    }

    private string Logs() => string.Join("\n", Directory.EnumerateFiles(_dir, "*.log").Select(f =>
    {
        try { return $"== {Path.GetFileName(f)}\n{File.ReadAllText(f)}"; }
        catch (IOException) { return ""; }
    }));

    private async Task<Process> StartBackendAsync(DomainRecord a, DomainRecord b)
    {
        var peer = Peer.Start("netfront-backend", _listener!.SocketPath, _host!.HypercallSocketPath,
            a.Domid.ToString(System.Globalization.CultureInfo.InvariantCulture), b.Domid.ToString(System.Globalization.CultureInfo.InvariantCulture));
        _peers.Add(peer);
        using var cts = new CancellationTokenSource(Limit);
        var line = await peer.StandardOutput.ReadLineAsync(cts.Token);
        if (line != "connected")
            throw new InvalidOperationException($"backend said '{line}': {await peer.StandardError.ReadToEndAsync()}\n{Logs()}");
        return peer;
    }

    private string Netns(string name) => _names.Netns(name);

    private (int Code, string Output) InGuest(string guest, params string[] command) =>
        RunCode("ip", ["netns", "exec", Netns(guest), .. command]);

    private static (int Code, string Output) RunCode(string file, string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var error = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(60_000)) p.Kill(true);
        p.WaitForExit();
        return (p.ExitCode, output + error.Result);
    }

    private void Ping(string from, string to)
    {
        var (code, output) = InGuest(from, "ping", "-c", "3", "-i", "0.2", "-W", "5", to);
        Assert.True(code == 0, $"ping {to} from {from} failed:\n{output}\n{Logs()}");
    }

    [SkippableFact]
    public async Task Two_guests_ping_and_stream_tcp_through_a_test_backend_and_reconnect_after_it_is_killed()
    {
        var (manager, dom0) = await StartAsync();
        var web = await manager.CreateAsync(Guest("web", "00:16:3e:00:00:01", "198.18.0.1/24"));
        var client = await manager.CreateAsync(Guest("client", "00:16:3e:00:00:02", "198.18.0.2/24"));

        // eth0 exists in each guest with the vif's MAC, MTU and address before any backend is there.
        await UntilAsync(() => Task.FromResult(InGuest("web", "ip", "-o", "addr", "show", "eth0").Output.Contains("198.18.0.1/24", StringComparison.Ordinal)),
            "web's eth0 with its address");
        await UntilAsync(() => Task.FromResult(InGuest("client", "ip", "-o", "addr", "show", "eth0").Output.Contains("198.18.0.2/24", StringComparison.Ordinal)),
            "client's eth0 with its address");
        var link = InGuest("client", "ip", "-o", "link", "show", "eth0").Output;
        Assert.Contains("00:16:3e:00:00:02", link, StringComparison.Ordinal);
        Assert.Contains("mtu 1500", link, StringComparison.Ordinal);

        // No backend yet: eth0 is up without a carrier.
        Assert.Contains("NO-CARRIER", link, StringComparison.Ordinal);
        var backend = await StartBackendAsync(web, client);
        Assert.Equal("4", await dom0.ReadAsync($"/local/domain/{web.Domid}/device/vif/0/state"));
        Assert.NotNull(await dom0.TryReadAsync($"/local/domain/{web.Domid}/device/vif/0/event-channel-tx"));
        Assert.NotNull(await dom0.TryReadAsync($"/local/domain/{client.Domid}/device/vif/0/event-channel"));
        Assert.Equal("1", await dom0.ReadAsync($"/local/domain/{client.Domid}/device/vif/0/request-rx-copy"));
        Ping("client", "198.18.0.1");
        Ping("web", "198.18.0.2");

        // A TCP stream: 64 KiB GSO frames cross as many slots with their GSO extra, both ways (ACKs).
        using (var server = Process.Start(new ProcessStartInfo("ip", ["netns", "exec", Netns("web"), "iperf3", "-s", "-1", "-B", "198.18.0.1"])
               { RedirectStandardOutput = true, RedirectStandardError = true })!)
        {
            await Task.Delay(300);
            var (code, output) = InGuest("client", "iperf3", "-c", "198.18.0.1", "-t", "1", "-f", "m");
            Assert.True(code == 0, $"iperf3 failed:\n{output}\n{Logs()}");
            Assert.Contains("receiver", output, StringComparison.Ordinal);
            log.WriteLine(output);
            server.WaitForExit(10_000);
        }

        // netback dies: the guests notice (end of file on the event channels), tear down and wait as Initialising.
        backend.Kill();
        await backend.WaitForExitAsync();
        foreach (var d in new[] { web, client })
            await UntilAsync(async () => await dom0.TryReadAsync($"/local/domain/{d.Domid}/device/vif/0/state") == "1",
                $"{d.Name}'s netfront to go back to Initialising");
        // The guest sees its link down meanwhile, with its address kept.
        Assert.Contains("NO-CARRIER", InGuest("web", "ip", "-o", "link", "show", "eth0").Output, StringComparison.Ordinal);
        Assert.Contains("198.18.0.1/24", InGuest("web", "ip", "-o", "addr", "show", "eth0").Output, StringComparison.Ordinal);

        // A new backend: both reconnect with fresh rings while eth0 stayed as it was.
        await StartBackendAsync(web, client);
        Ping("client", "198.18.0.1");
        Assert.Contains("198.18.0.2/24", InGuest("client", "ip", "-o", "addr", "show", "eth0").Output, StringComparison.Ordinal);

        // network-attach at runtime: vif 1 (with a gateway beside its ip) becomes eth1; network-detach removes eth0.
        var attach = XenstoreLayout.Vif(client.Domid, new VifConfig { Devid = 1, Ip = "198.18.1.2/24" }, "00:16:3e:00:01:02", $"vif{client.Domid}.1")
            .Append(new XenstoreWriteValue($"/local/domain/0/backend/vif/{client.Domid}/1/gateway", "198.18.1.254")).ToList();
        await XenstoreLayoutWriter.ApplyAsync(dom0, attach);
        await UntilAsync(() => Task.FromResult(InGuest("client", "ip", "route").Output.Contains("default via 198.18.1.254 dev eth1", StringComparison.Ordinal)),
            "client's eth1 with its address and default route after network-attach");
        Assert.Contains("198.18.1.2/24", InGuest("client", "ip", "-o", "addr", "show", "eth1").Output, StringComparison.Ordinal);
        await XenstoreLayoutWriter.ApplyAsync(dom0, XenstoreLayout.DeviceRemoval("vif", client.Domid, 0));
        await UntilAsync(() => Task.FromResult(InGuest("client", "ip", "-o", "link", "show", "eth0").Code != 0), "client's eth0 gone after network-detach");
        Assert.Contains("eth1", InGuest("client", "ip", "-o", "link").Output, StringComparison.Ordinal);

        log.WriteLine(Logs());
        await manager.DestroyAsync("web");
        await manager.DestroyAsync("client");
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var peer in _peers)
        {
            try { if (!peer.HasExited) peer.Kill(); } catch (InvalidOperationException) { }
            peer.Dispose();
        }
        if (_manager is not null) await _manager.DisposeAsync();
        if (_dom0 is not null) await _dom0.DisposeAsync();
        if (_listener is not null) await _listener.DisposeAsync();
        _host?.Dispose();
        if (_host is not null) GuestHarness.RemoveInstance(_names);
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
