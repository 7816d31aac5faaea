using System.Text.Json;
using XenIo.Net.Tap;
using XenIo.Tests;
using XenIo.VSwitch.Core;
using XenIo.VSwitch.Ports;
using Xunit;

namespace XenIo.Integration.Tests.VSwitch;

public class TapPortTests
{
    [SkippableFact]
    public void Two_namespaces_on_tap_ports_ping_and_run_iperf3_through_the_bridge_with_gso_frames_unsegmented()
    {
        Requires.Root();
        Requires.Tool("iperf3");
        Requires.Tool("ping");
        using var ns1 = new Netns("xvs-tap-a");
        using var ns2 = new Netns("xvs-tap-b");
        using var loop = new EpollLoop("vswitch-test");
        var bridge = new Bridge("xbr-tap");
        using var p1 = new TapPort(TapDevice.Create("xvs-tap-a"), loop);
        using var p2 = new TapPort(TapDevice.Create("xvs-tap-b"), loop);
        bridge.AddPort(p1);
        bridge.AddPort(p2);
        ns1.Adopt("xvs-tap-a", "198.18.10.1/24");
        ns2.Adopt("xvs-tap-b", "198.18.10.2/24");

        ns1.Exec("ping", "-c", "3", "-i", "0.2", "-W", "2", "198.18.10.2");
        Assert.True(p1.Counters.RxPackets >= 3);
        Assert.True(p2.Counters.TxPackets >= 3);

        using var server = ns2.Start("iperf3", "-s", "-1", "-B", "198.18.10.2");
        Thread.Sleep(300);
        var json = "";
        for (var attempt = 0; attempt < 5; attempt++)
        {
            var (code, output) = ns1.TryExec("iperf3", "-c", "198.18.10.2", "-t", "2", "-J");
            json = output[..(output.LastIndexOf('}') + 1)];
            if (code == 0) break;
            Thread.Sleep(300);
        }
        server.WaitForExit(10_000);
        using var doc = JsonDocument.Parse(json);
        var bps = doc.RootElement.GetProperty("end").GetProperty("sum_received").GetProperty("bits_per_second").GetDouble();
        Assert.True(bps > 0);
        // TCP with TSO on both TAPs: large GSO frames came in and went out whole.
        Assert.True(p1.GsoFramesReceived > 0, "no GSO frame reached the switch");
        Assert.True(p2.Counters.TxBytes / Math.Max(1, p2.Counters.TxPackets) > 1514, "frames were segmented on the way");
        // Only frames flooded before the other interface was up may have been dropped (LinkDown).
        var drops = p1.Counters.DropsByReason().Concat(p2.Counters.DropsByReason()).Where(d => d.Key != DropReason.LinkDown).ToList();
        Assert.True(drops.Count == 0, $"drops: {string.Join(", ", drops)}");
    }
}
