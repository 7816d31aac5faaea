using XenIo.Bench.Peers;
using XenIo.Net.Tap;
using XenIo.VSwitch.Core;
using XenIo.VSwitch.Ports;

namespace XenIo.Bench.VSwitch;

/// <summary>
/// tap2tap.tcp_gbps.{xenio,kernel_bridge,ovs_netdev,ovs_netdev_tso,vde}: one iperf3 TCP stream between
/// two fresh namespaces (MTU 1500), through our bridge with two TAP ports and, in the same run, through
/// each peer of the shared harness (bench/XenIo.Bench/Peers), with the ratios against Open vSwitch's
/// userspace datapath with TSO (the peer to beat) and the kernel bridge (the stretch).
/// </summary>
public sealed class Tap2TapBenchmark : ISystemBenchmark
{
    public string Name => "tap2tap";

    public Task RunAsync(BenchContext context, CancellationToken cancellationToken)
    {
        double? xenio = null;
        if (Environment.UserName != "root") context.Unavailable("tap2tap.tcp_gbps.xenio", "needs root (namespaces, TAP devices)");
        else if (PeerProcesses.Which("iperf3") is null) context.Unavailable("tap2tap.tcp_gbps.xenio", "iperf3 is not installed");
        else
        {
            try
            {
                xenio = RunXenio();
                context.Report("tap2tap.tcp_gbps.xenio", xenio.Value, "Gbit/s", $"XenIo bridge, two TAP ports with TSO; one iperf3 TCP stream, {Iperf.Seconds} s, MTU 1500");
            }
            catch (Exception e)
            {
                context.Unavailable("tap2tap.tcp_gbps.xenio", $"failed: {e.Message}");
            }
        }

        var peers = PeerHarness.Run(context, PeerHarness.AllPeers(), cancellationToken: cancellationToken);
        Ratio(context, xenio, peers, "ovs_netdev_tso", "tap2tap.ratio_vs_ovs_netdev_tso", target: 1.0);
        Ratio(context, xenio, peers, "kernel_bridge", "tap2tap.ratio_vs_kernel_bridge", target: null);
        return Task.CompletedTask;
    }

    private static void Ratio(BenchContext context, double? xenio, Dictionary<string, double> peers, string peer, string key, double? target)
    {
        if (xenio is not { } x) context.Unavailable(key, "tap2tap.tcp_gbps.xenio was not measured");
        else if (!peers.TryGetValue(peer, out var p) || p <= 0) context.Unavailable(key, $"tap2tap.tcp_gbps.{peer} was not measured");
        else context.Report(key, x / p, "ratio", $"xenio / {peer}, same run", target);
    }

    private static double RunXenio()
    {
        using var ns1 = new BenchNamespace("x-a");
        using var ns2 = new BenchNamespace("x-b");
        using var loop = new EpollLoop("bench-tap2tap");
        var bridge = new Bridge("xvp-x-br");
        using var p1 = new TapPort(TapDevice.Create("xvp-x-a"), loop);
        using var p2 = new TapPort(TapDevice.Create("xvp-x-b"), loop);
        bridge.AddPort(p1);
        bridge.AddPort(p2);
        ns1.Adopt("xvp-x-a", "198.18.50.1/24");
        ns2.Adopt("xvp-x-b", "198.18.50.2/24");
        return Iperf.TcpGbps(ns1, ns2, "198.18.50.2");
    }
}
