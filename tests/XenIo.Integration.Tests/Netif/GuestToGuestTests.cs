using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using XenIo.Hypervisor.Store.Client;
using XenIo.Tests;
using Xunit;

namespace XenIo.Integration.Tests.Netif;

/// <summary>
/// Issue 7's acceptance: the two example guests, booted by `xenio up` (hyperd with xenstored, and
/// netback) and `xenio create`, reach each other through netfront → netback → vswitch → netback →
/// netfront: ping both ways, iperf3 TCP and UDP, while `xenio capture xenbr0` records the flows and
/// tshark reads them.
/// </summary>
public sealed class GuestToGuestTests : IDisposable
{
    private readonly string _run = Directory.CreateTempSubdirectory("xenio-netif-run-").FullName;
    private readonly string _logs = Directory.CreateTempSubdirectory("xenio-netif-log-").FullName;
    private readonly string _instance = $"xni{Environment.ProcessId % 100000}";
    private Dictionary<string, string> _env = [];

    private (int Code, string Output) Xenio(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "xenio.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["XENIO_INSTANCE"] = _instance;
        psi.Environment["XENIO_LOG_DIR"] = _logs;
        foreach (var (k, v) in _env) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(3))) { p.Kill(true); throw new TimeoutException($"xenio {string.Join(' ', args)} hung"); }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    private Process StartXenio(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "xenio.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["XENIO_INSTANCE"] = _instance;
        return Process.Start(psi)!;
    }

    private string Logs() => string.Join("\n", Directory.GetFiles(_logs).Select(f =>
    {
        try { return $"== {f}\n{File.ReadAllText(f)}"; }
        catch (IOException) { return ""; }
    }));

    private string Netns(string guest) => $"{_instance}-{_instance}{guest}";

    private (int Code, string Output) InGuest(string guest, params string[] command) => Netns_(Netns(guest), command);

    private static (int Code, string Output) Netns_(string netns, string[] command)
    {
        var psi = new ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "netns", "exec", netns }.Concat(command)) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var error = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(120_000)) p.Kill(true);
        p.WaitForExit();
        return (p.ExitCode, output + error.Result);
    }

    private static async Task<ushort> DomidAsync(XenstoreClient store, string name)
    {
        foreach (var d in await store.DirectoryAsync("/local/domain"))
            if (await store.TryReadAsync($"/local/domain/{d}/name") == name) return ushort.Parse(d, CultureInfo.InvariantCulture);
        throw new InvalidOperationException($"no domain named {name}");
    }

    [SkippableFact]
    public async Task Example_guests_ping_and_run_iperf3_through_netback_and_the_capture_shows_it()
    {
        Requires.Root();
        Requires.Tool("iperf3");
        Requires.Tool("tshark");
        Requires.Tool("ping");
        var repo = RepoBuild.Root()!;
        var agent = RepoBuild.GuestAgent();
        Skip.If(agent is null, RepoBuild.NoGuestAgent);
        _env = new Dictionary<string, string> { ["XENIO_GUEST_AGENT"] = agent! };
        var up = Xenio("up", "--run-dir", _run);
        Assert.True(up.Code == 0, up.Output + Logs());
        try
        {
            foreach (var guest in new[] { "web", "client" })
            {
                var create = Xenio("create", "--run-dir", _run, Path.Combine(repo, "examples", $"{guest}.cfg"), $"name=\"{_instance}{guest}\"", "disk=[]");
                Assert.True(create.Code == 0, create.Output + Logs());
            }
            await using var store = await XenstoreClient.ConnectAsync(Path.Combine(_run, "xenstored", "socket"));
            var web = await DomidAsync(store, $"{_instance}web");
            var client = await DomidAsync(store, $"{_instance}client");

            // netback takes each vif to InitWait, netfront answers, both end Connected.
            await ConnectedAsync(store, web, client);

            var pcap = Path.Combine(_run, "xenbr0.pcap");
            using var capture = StartXenio("capture", "--run-dir", _run, "xenbr0", "-w", pcap, "-c", "400");
            await Task.Delay(500);

            var ping = InGuest("client", "ping", "-c", "3", "-i", "0.2", "-W", "5", "198.18.0.1");
            Assert.True(ping.Code == 0, ping.Output + Logs());
            ping = InGuest("web", "ping", "-c", "3", "-i", "0.2", "-W", "5", "198.18.0.2");
            Assert.True(ping.Code == 0, ping.Output + Logs());

            foreach (var udp in new[] { false, true }) await IperfAsync(udp);

            Assert.True(capture.WaitForExit(30_000), "xenio capture did not stop after 400 frames\n" + Logs());
            var tshark = XenIo.Tests.Netns.Run("tshark", "-r", pcap, "-T", "fields", "-e", "ip.src", "-e", "ip.dst", "-e", "_ws.col.Protocol");
            Assert.Contains("198.18.0.2\t198.18.0.1\tICMP", tshark, StringComparison.Ordinal);
            Assert.Contains("198.18.0.1\t198.18.0.2\tICMP", tshark, StringComparison.Ordinal);
            Assert.Contains("TCP", tshark, StringComparison.Ordinal);

            // netback killed mid-iperf3: `xenio up` restarts it, the guests reconnect by themselves, a new iperf3 passes.
            // Watches on the frontends' state: netfront writes it only when it changes, so an event after
            // the kill is its reaction (back to Initialising), not a stale Connected.
            await using var webState = await store.SubscribeAsync($"/local/domain/{web}/device/vif/0/state", "g2g-web");
            await using var clientState = await store.SubscribeAsync($"/local/domain/{client}/device/vif/0/state", "g2g-client");
            foreach (var w in new[] { webState, clientState })
            {
                await w.Events.WaitToReadAsync();
                while (w.Events.TryRead(out _)) { }
            }
            using (var server = Process.Start(new ProcessStartInfo("ip", ["netns", "exec", Netns("web"), "iperf3", "-s", "-1", "-B", "198.18.0.1"])
                   { RedirectStandardOutput = true, RedirectStandardError = true })!)
            {
                await Task.Delay(300);
                using var running = Process.Start(new ProcessStartInfo("ip", ["netns", "exec", Netns("client"), "iperf3", "-c", "198.18.0.1", "-t", "10"])
                    { RedirectStandardOutput = true, RedirectStandardError = true })!;
                await Task.Delay(1500);
                var netback = PidOf("netback");
                Assert.NotNull(netback);
                Process.GetProcessById(netback.Value).Kill();
                running.WaitForExit(30_000);
                server.Kill();
            }
            using (var reconnect = new CancellationTokenSource(TimeSpan.FromSeconds(60)))
                foreach (var w in new[] { webState, clientState }) await w.Events.WaitToReadAsync(reconnect.Token);
            await ConnectedAsync(store, web, client);
            await IperfAsync(udp: false);
        }
        finally
        {
            var down = Xenio("down", "--run-dir", _run, "--timeout", "5");
            Assert.True(down.Code == 0, down.Output + Logs());
        }
    }

    private async Task ConnectedAsync(XenstoreClient store, ushort web, ushort client)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        foreach (var d in new[] { web, client })
        {
            while (await store.TryReadAsync($"/local/domain/{d}/device/vif/0/state") != "4"
                   || await store.TryReadAsync($"/local/domain/0/backend/vif/{d}/0/state") != "4")
            {
                if (DateTime.UtcNow > deadline)
                {
                    var backendState = await store.TryReadAsync($"/local/domain/0/backend/vif/{d}/0/state");
                    Assert.Fail($"vif of domain {d} not connected: frontend {await store.TryReadAsync($"/local/domain/{d}/device/vif/0/state")}, backend {backendState}\n{Logs()}");
                }
                await Task.Delay(50);
            }
        }
    }

    private async Task IperfAsync(bool udp)
    {
        using var server = Process.Start(new ProcessStartInfo("ip", ["netns", "exec", Netns("web"), "iperf3", "-s", "-1", "-B", "198.18.0.1"])
            { RedirectStandardOutput = true, RedirectStandardError = true })!;
        await Task.Delay(300);
        string[] args = udp
            ? ["iperf3", "-c", "198.18.0.1", "-u", "-b", "200M", "-t", "2", "-J"]
            : ["iperf3", "-c", "198.18.0.1", "-t", "2", "-J"];
        var (code, json) = InGuest("client", args);
        Assert.True(code == 0, json + Logs());
        using var doc = JsonDocument.Parse(json);
        var end = doc.RootElement.GetProperty("end");
        var bits = udp ? end.GetProperty("sum").GetProperty("bits_per_second").GetDouble()
            : end.GetProperty("sum_received").GetProperty("bits_per_second").GetDouble();
        Assert.True(bits > 1e6, $"iperf3 {(udp ? "UDP" : "TCP")}: {bits} bit/s");
        if (udp) Assert.True(end.GetProperty("sum").GetProperty("lost_percent").GetDouble() < 50, json);
        server.WaitForExit(10_000);
    }

    private int? PidOf(string verb) =>
        Process.GetProcesses().Select(p => p.Id).FirstOrDefault(id => CommandLine(id).Contains($"xenio.dll\0{verb}\0--run-dir\0{_run}", StringComparison.Ordinal)) is var pid and > 0 ? pid : null;

    private static string CommandLine(int pid)
    {
        try { return File.ReadAllText($"/proc/{pid}/cmdline"); }
        catch (IOException) { return ""; }
        catch (UnauthorizedAccessException) { return ""; }
    }

    public void Dispose()
    {
        foreach (var p in Process.GetProcesses())
        {
            string cmd;
            try { cmd = File.ReadAllText($"/proc/{p.Id}/cmdline"); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { continue; }
            if (cmd.Contains($"--run-dir\0{_run}", StringComparison.Ordinal))
                try { p.Kill(); } catch (InvalidOperationException) { }
        }
        try { Directory.Delete(_run, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        try { Directory.Delete(_logs, true); } catch (IOException) { }
    }
}
