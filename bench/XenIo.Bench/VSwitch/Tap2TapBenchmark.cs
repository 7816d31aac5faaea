using XenIo.Bench.Peers;
using XenIo.Net.Tap;
using XenIo.VSwitch.Core;
using XenIo.VSwitch.Ports;

namespace XenIo.Bench.VSwitch;

/// <summary>
/// tap2tap.tcp_gbps.{xenio,kernel_bridge,ovs_netdev,ovs_netdev_tso,vde}: one iperf3 TCP stream between
/// two fresh namespaces (MTU 1500), through our bridge with two TAP ports and, in the same run, through
/// each peer of the shared harness (bench/XenIo.Bench/Peers), with the ratios against Open vSwitch's
/// userspace datapath with TSO (the peer to beat) and the kernel bridge (the stretch). Ours and the
/// peer to beat run in <see cref="PairedRounds"/> (medians of adjacent pairs); the other peers once.
/// </summary>
public sealed class Tap2TapBenchmark : ISystemBenchmark
{
    public string Name => "tap2tap";

    public Task RunAsync(BenchContext context, CancellationToken cancellationToken)
    {
        var tso = new OvsNetdevPeer(userspaceTso: true);
        var xenio = MeasurePaired(context, tso, cancellationToken);
        var peers = PeerHarness.Run(context, PeerHarness.AllPeers().Where(p => p.Key != tso.Key), cancellationToken: cancellationToken);
        if (xenio is not { } x) context.Unavailable("tap2tap.ratio_vs_kernel_bridge", "tap2tap.tcp_gbps.xenio was not measured");
        else if (!peers.TryGetValue("kernel_bridge", out var k) || k <= 0) context.Unavailable("tap2tap.ratio_vs_kernel_bridge", "tap2tap.tcp_gbps.kernel_bridge was not measured");
        else context.Report("tap2tap.ratio_vs_kernel_bridge", x / k, "ratio", "xenio / kernel_bridge, same run");
        return Task.CompletedTask;
    }

    /// <summary>Ours and <paramref name="tso"/> in paired rounds: reports both and the ratio the target is on; returns ours.</summary>
    private static double? MeasurePaired(BenchContext context, OvsNetdevPeer tso, CancellationToken cancellationToken)
    {
        const string RatioKey = "tap2tap.ratio_vs_ovs_netdev_tso";
        if (PeerHarness.Unrunnable("namespaces, TAP devices") is { } why)
        {
            context.Unavailable("tap2tap.tcp_gbps.xenio", why);
            context.Unavailable(RatioKey, why);
            return null;
        }
        try
        {
            if (tso.Missing() is { } missing) context.Unavailable($"tap2tap.tcp_gbps.{tso.Key}", missing);
            var paired = PairedRounds.Run(RunXenio, tso, Path.Combine(context.WorkDirectory, "peers"), cancellationToken);
            context.Report("tap2tap.tcp_gbps.xenio", paired.Ours, "Gbit/s", $"XenIo bridge, two TAP ports with TSO; one iperf3 TCP stream, {Iperf.Seconds} s, MTU 1500; median of {PairedRounds.Rounds}");
            if (paired is { Theirs: { } t, Ratio: { } r })
            {
                context.Report($"tap2tap.tcp_gbps.{tso.Key}", t, "Gbit/s", $"{tso.Description}; one iperf3 TCP stream, {Iperf.Seconds} s, MTU 1500; median of {PairedRounds.Rounds}");
                context.Report(RatioKey, r, "ratio", $"xenio / ovs_netdev_tso, {paired.RatioDescription}, same run", 1.0);
            }
            else context.Unavailable(RatioKey, "ovs_netdev_tso was not measured");
            return paired.Ours;
        }
        catch (Exception e)
        {
            context.Unavailable("tap2tap.tcp_gbps.xenio", $"failed: {e.Message}");
            context.Unavailable(RatioKey, "tap2tap.tcp_gbps.xenio was not measured");
            return null;
        }
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
