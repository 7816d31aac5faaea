using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using XenIo.Bench.Peers;
using XenIo.Hypervisor.Store.Client;

namespace XenIo.Bench.Netif;

/// <summary>
/// guest2guest.tcp_gbps.xenio and guest2guest.udp64_kpps.xenio: two guests booted by `xenio up` and
/// `xenio create` (NativeAOT agent, one vif each on xenbr0, MTU 1500), iperf3 inside their network
/// namespaces (`ip netns exec`) through netfront → netback → vswitch → netback → netfront. The ratios
/// are taken against the namespace-to-namespace peers of the same run: the tap2tap figures when that
/// benchmark already ran, else Open vSwitch's userspace datapath with TSO and the kernel bridge are
/// measured here (guest2guest.peer_tcp_gbps.*). Target: ≥ 0.6 × ovs_netdev_tso.
/// </summary>
public sealed class GuestToGuestBenchmark : ISystemBenchmark
{
    private const string TcpKey = "guest2guest.tcp_gbps.xenio";
    private const string UdpKey = "guest2guest.udp64_kpps.xenio";
    private const int Seconds = 5;

    public string Name => "guest2guest";

    public async Task RunAsync(BenchContext context, CancellationToken cancellationToken)
    {
        if (PeerHarness.Unrunnable("namespaces, cgroups, TAP devices") is { } why)
        {
            Unavailable(context, why);
            return;
        }
        Measured m;
        try
        {
            if (await MeasureAsync(context, cancellationToken) is not { } measured)
                return;
            m = measured;
            context.Report(TcpKey, m.TcpGbps, "Gbit/s", $"two guests on xenbr0 through netfront and netback; one iperf3 TCP stream, {Seconds} s, MTU 1500; median of {PairedRounds.Rounds}");
            context.Report(UdpKey, m.UdpKpps, "kpps", $"iperf3 UDP, 64-byte payloads, unlimited rate, {Seconds} s: datagrams received per second");
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            Unavailable(context, $"failed: {e.Message}");
            return;
        }
        if (m.Tso is { } tso)
        {
            context.Report("guest2guest.peer_tcp_gbps.ovs_netdev_tso", tso.Gbps, "Gbit/s", $"{Tso.Description}; one iperf3 TCP stream, {Seconds} s, MTU 1500; median of {PairedRounds.Rounds}");
            context.Report("guest2guest.ratio_vs_ovs_netdev_tso", tso.Ratio, "ratio", $"{TcpKey} / ovs_netdev_tso namespace-to-namespace, {tso.Description}, same run", 0.6);
        }
        else context.Unavailable("guest2guest.ratio_vs_ovs_netdev_tso", Tso.Missing() ?? "ovs_netdev_tso was not measured");
        Ratios(context, m.TcpGbps, cancellationToken);
    }

    /// <summary>The peer the target is set against; measured between our rounds, while the guests stay up.</summary>
    private static readonly OvsNetdevPeer Tso = new(userspaceTso: true);

    private static void Unavailable(BenchContext context, string why)
    {
        context.Unavailable(TcpKey, why);
        context.Unavailable(UdpKey, why);
        context.Unavailable("guest2guest.ratio_vs_ovs_netdev_tso", why);
    }

    /// <summary>The ratio against the kernel bridge, measured namespace to namespace in this run (the stretch; no target).</summary>
    private static void Ratios(BenchContext context, double tcp, CancellationToken cancellationToken)
    {
        const string Key = "guest2guest.ratio_vs_kernel_bridge";
        var peers = PeerHarness.Run(context, PeerHarness.AllPeers().Where(p => p.Key == "kernel_bridge"), "guest2guest.peer_tcp_gbps.", cancellationToken);
        if (peers.TryGetValue("kernel_bridge", out var k) && k > 0) context.Report(Key, tcp / k, "ratio", $"{TcpKey} / kernel_bridge namespace-to-namespace, same run");
        else context.Unavailable(Key, "the kernel_bridge figure was not measured in this run");
    }

    /// <param name="Description">How the ratio was taken (<see cref="PairedRounds.Result.RatioDescription"/>).</param>
    private sealed record PeerPair(double Gbps, double Ratio, string Description);

    private sealed record Measured(double TcpGbps, double UdpKpps, PeerPair? Tso);

    private static async Task<Measured?> MeasureAsync(BenchContext context, CancellationToken cancellationToken)
    {
        var agent = await Domains.AotAgent.PublishAsync(context, cancellationToken);
        if (agent is null)
        {
            Unavailable(context, "NativeAOT publish of the agent failed");
            return null;
        }
        var run = Path.Combine(context.WorkDirectory, "guest2guest-run");
        var logs = Path.Combine(context.WorkDirectory, "guest2guest-log");
        Directory.CreateDirectory(run);
        Directory.CreateDirectory(logs);
        var instance = $"xg{Environment.ProcessId % 100000}";
        var env = new Dictionary<string, string> { ["XENIO_GUEST_AGENT"] = agent, ["XENIO_INSTANCE"] = instance, ["XENIO_LOG_DIR"] = logs };
        Xenio(env, "up", "--run-dir", run);
        try
        {
            foreach (var (name, n) in new[] { ("a", 1), ("b", 2) })
            {
                var cfg = Path.Combine(context.WorkDirectory, $"guest2guest-{name}.cfg");
                File.WriteAllText(cfg, $"name = \"g2g{name}\"\nmemory = 128\nvcpus = 1\n"
                    + $"vif = [ 'mac=00:16:3e:00:60:0{n},bridge=xenbr0,ip=198.18.60.{n}/24' ]\ninit = [ \"/bin/sleep\", \"3600\" ]\n");
                Xenio(env, "create", "--run-dir", run, cfg);
            }
            await using var store = await XenstoreClient.ConnectAsync(Path.Combine(run, "xenstored", "socket"), cancellationToken);
            var deadline = DateTime.UtcNow.AddSeconds(30);
            foreach (var name in new[] { "g2ga", "g2gb" })
            {
                var domid = await DomidAsync(store, name);
                while (await store.TryReadAsync($"/local/domain/{domid}/device/vif/0/state") != "4"
                       || await store.TryReadAsync($"/local/domain/0/backend/vif/{domid}/0/state") != "4")
                {
                    if (DateTime.UtcNow > deadline)
                    {
                        var backend = await store.TryReadAsync($"/local/domain/0/backend/vif/{domid}/0/state");
                        Unavailable(context, backend is null or "1"
                            ? "netback serves no vif backends in this build (backend state stayed Initialising)"
                            : $"{name}'s vif did not connect within 30 s (backend state {backend})");
                        return null;
                    }
                    await Task.Delay(50, cancellationToken);
                }
            }
            string a = $"{instance}-g2ga", b = $"{instance}-g2gb";
            PeerProcesses.WaitFor(() => PeerProcesses.Run("ip", ["netns", "exec", a, "ping", "-c", "1", "-W", "1", "198.18.60.2"], allowFailure: true).Contains(" 0% packet loss", StringComparison.Ordinal),
                "ping between the guests", timeoutMs: 15_000);
            var paired = PairedRounds.Run(() => Iperf.Parse(Client(a, b, ["-t", Seconds.ToString(CultureInfo.InvariantCulture)])),
                Tso, Path.Combine(context.WorkDirectory, "peers"), cancellationToken);
            var udpJson = Client(a, b, ["-u", "-b", "0", "-l", "64", "-t", Seconds.ToString(CultureInfo.InvariantCulture)]);
            using var doc = JsonDocument.Parse(udpJson);
            var sum = doc.RootElement.GetProperty("end").GetProperty("sum");
            var received = sum.GetProperty("packets").GetDouble() - sum.GetProperty("lost_packets").GetDouble();
            return new Measured(paired.Ours, received / sum.GetProperty("seconds").GetDouble() / 1000,
                paired is { Theirs: { } t, Ratio: { } ratio } ? new PeerPair(t, ratio, paired.RatioDescription) : null);
        }
        finally
        {
            Xenio(env, "down", "--run-dir", run, "--timeout", "5");
        }
    }

    /// <summary>iperf3 from the guest namespace <paramref name="clientNs"/> to a one-shot server at 198.18.60.1 in <paramref name="serverNs"/>; its JSON.</summary>
    private static string Client(string serverNs, string clientNs, string[] args)
    {
        using var processes = new PeerProcesses();
        var s = processes.Start("ip", ["netns", "exec", serverNs, "iperf3", "-s", "-1", "-B", "198.18.60.1"]);
        PeerProcesses.WaitFor(() => PeerProcesses.Run("ip", ["netns", "exec", serverNs, "ss", "-Htln", "src", "198.18.60.1"]).Contains(':'),
            "iperf3 server", timeoutMs: 5_000);
        PeerProcesses.EnsureRunning(s, "iperf3 -s");
        return PeerProcesses.Run("ip", ["netns", "exec", clientNs, "iperf3", "-c", "198.18.60.1", "-J", "--connect-timeout", "3000", .. args],
            timeoutMs: (Seconds + 20) * 1000);
    }

    private static async Task<ushort> DomidAsync(XenstoreClient store, string name)
    {
        foreach (var d in await store.DirectoryAsync("/local/domain"))
            if (await store.TryReadAsync($"/local/domain/{d}/name") == name) return ushort.Parse(d, CultureInfo.InvariantCulture);
        throw new InvalidOperationException($"no domain named {name}");
    }

    private static void Xenio(Dictionary<string, string> env, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "xenio.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (k, v) in env) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(2))) { p.Kill(true); throw new TimeoutException($"xenio {args[0]} hung"); }
        if (p.ExitCode != 0 && args[0] != "down") throw new InvalidOperationException($"xenio {args[0]} exited {p.ExitCode}: {stdout.Result}{stderr.Result}");
    }
}
