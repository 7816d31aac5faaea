using System.Diagnostics;
using System.Text.Json;
using XenIo.Net.Tap;
using XenIo.VSwitch.Core;
using XenIo.VSwitch.Ports;

namespace XenIo.Bench.VSwitch;

/// <summary>
/// tap2tap.tcp_gbps.{xenio,kernel_bridge}: one iperf3 TCP stream between two fresh namespaces (MTU
/// 1500), through our bridge with two TAP ports and, in the same run, through a Linux bridge with veths
/// (in a third namespace, so nothing touches the host's own network). OVS and VDE peers belong to the
/// shared peer harness and are reported as not measured here.
/// </summary>
public sealed class Tap2TapBenchmark : ISystemBenchmark
{
    private const int Seconds = 5;
    public string Name => "tap2tap";

    public Task RunAsync(BenchContext context, CancellationToken cancellationToken)
    {
        if (Environment.UserName != "root")
        {
            context.Unavailable("tap2tap.tcp_gbps.xenio", "needs root (namespaces, TAP devices)");
            return Task.CompletedTask;
        }
        if (Which("iperf3") is null)
        {
            context.Unavailable("tap2tap.tcp_gbps.xenio", "iperf3 is not installed");
            return Task.CompletedTask;
        }
        var xenio = RunXenio();
        context.Report("tap2tap.tcp_gbps.xenio", xenio, "Gbit/s", $"one iperf3 TCP stream, {Seconds} s, TAP ports with TSO");
        var kernel = RunKernelBridge();
        context.Report("tap2tap.tcp_gbps.kernel_bridge", kernel, "Gbit/s", "Linux bridge + veth, same run");
        context.Report("tap2tap.ratio_vs_kernel_bridge", xenio / kernel, "ratio", "xenio / kernel bridge");
        foreach (var peer in new[] { "ovs_netdev", "ovs_netdev_tso", "vde" })
            context.Unavailable($"tap2tap.tcp_gbps.{peer}", "peer harness not part of the vswitch core work");
        return Task.CompletedTask;
    }

    private static double RunXenio()
    {
        using var ns1 = new BenchNetns("xvb-a");
        using var ns2 = new BenchNetns("xvb-b");
        using var loop = new EpollLoop("bench-tap2tap");
        var bridge = new Bridge("xvb-br");
        using var p1 = new TapPort(TapDevice.Create("xvb-a"), loop);
        using var p2 = new TapPort(TapDevice.Create("xvb-b"), loop);
        bridge.AddPort(p1);
        bridge.AddPort(p2);
        ns1.Adopt("xvb-a", "198.18.50.1/24");
        ns2.Adopt("xvb-b", "198.18.50.2/24");
        return Iperf(ns1, ns2, "198.18.50.2");
    }

    private static double RunKernelBridge()
    {
        using var ns1 = new BenchNetns("xvk-a");
        using var ns2 = new BenchNetns("xvk-b");
        using var nsb = new BenchNetns("xvk-br");
        nsb.Exec("ip", "link", "add", "br0", "type", "bridge");
        nsb.Exec("ip", "link", "set", "br0", "up");
        foreach (var (ns, ifname, cidr) in new[] { (ns1, "xvk-a", "198.18.51.1/24"), (ns2, "xvk-b", "198.18.51.2/24") })
        {
            nsb.Exec("ip", "link", "add", ifname, "type", "veth", "peer", "name", "eth0", "netns", ns.Name);
            nsb.Exec("ip", "link", "set", ifname, "master", "br0");
            nsb.Exec("ip", "link", "set", ifname, "up");
            ns.Exec("ip", "addr", "add", cidr, "dev", "eth0");
            ns.Exec("ip", "link", "set", "eth0", "up");
        }
        return Iperf(ns1, ns2, "198.18.51.2");
    }

    private static double Iperf(BenchNetns client, BenchNetns server, string address)
    {
        client.Exec("ping", "-c", "1", "-W", "2", address);
        using var s = server.Start("iperf3", "-s", "-1", "-B", address);
        Thread.Sleep(300);
        var output = client.Exec("iperf3", "-c", address, "-t", Seconds.ToString(System.Globalization.CultureInfo.InvariantCulture), "-J");
        s.WaitForExit(10_000);
        using var doc = JsonDocument.Parse(output);
        return doc.RootElement.GetProperty("end").GetProperty("sum_received").GetProperty("bits_per_second").GetDouble() / 1e9;
    }

    private static string? Which(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':').Select(d => Path.Combine(d, tool)).FirstOrDefault(File.Exists);

    private sealed class BenchNetns : IDisposable
    {
        public BenchNetns(string name)
        {
            Name = name;
            Run("ip", ["netns", "del", name], allowFailure: true);
            Run("ip", ["netns", "add", name], allowFailure: false);
            Exec("ip", "link", "set", "lo", "up");
        }

        public string Name { get; }

        public string Exec(params string[] args) => Run("ip", ["netns", "exec", Name, .. args], allowFailure: false);

        public Process Start(params string[] args)
        {
            var psi = new ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in new[] { "netns", "exec", Name }.Concat(args)) psi.ArgumentList.Add(a);
            return Process.Start(psi)!;
        }

        public void Adopt(string ifname, string cidr)
        {
            Run("ip", ["link", "set", ifname, "netns", Name], allowFailure: false);
            Exec("ip", "addr", "add", cidr, "dev", ifname);
            Exec("ip", "link", "set", ifname, "up");
        }

        private static string Run(string file, string[] args, bool allowFailure)
        {
            var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in args) psi.ArgumentList.Add(a);
            using var p = Process.Start(psi)!;
            var err = p.StandardError.ReadToEndAsync();
            var output = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            if (p.ExitCode != 0 && !allowFailure) throw new InvalidOperationException($"{file} {string.Join(' ', args)}: {err.Result}");
            return output;
        }

        public void Dispose() => Run("ip", ["netns", "del", Name], allowFailure: true);
    }
}
