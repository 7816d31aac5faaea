using XenIo.Net.Tap;
using XenIo.Tests;
using XenIo.VSwitch.Core;
using XenIo.VSwitch.Ports;
using Xunit;

namespace XenIo.Integration.Tests.VSwitch;

public class UplinkPortTests
{
    /// <summary>An uplink on a veth (no address on our side) whose peer is in a test namespace, bridged to a TAP host.</summary>
    [SkippableFact]
    public void An_uplink_on_a_veth_bridges_its_namespace_to_a_tap_host()
    {
        Requires.Root();
        Requires.Tool("ping");
        Requires.Tool("iperf3");
        using var ns1 = new Netns("xvs-up-1");
        using var ns2 = new Netns("xvs-up-2");
        Netns.Run("ip", ["link", "del", "xvs-upl"], allowFailure: true);
        Netns.Run("ip", "link", "add", "xvs-upl", "type", "veth", "peer", "name", "xvs-upp", "netns", ns1.Name);
        try
        {
            Netns.Run("ip", "link", "set", "xvs-upl", "up");
            ns1.Exec("ip", "addr", "add", "198.18.40.1/24", "dev", "xvs-upp");
            ns1.Exec("ip", "link", "set", "xvs-upp", "up");
            using var loop = new EpollLoop("vswitch-uplink-test");
            var bridge = new Bridge("xbr-up");
            using var uplink = new UplinkPort("xvs-upl", loop);
            using var tap = new TapPort(TapDevice.Create("xvs-up-2"), loop);
            bridge.AddPort(uplink);
            bridge.AddPort(tap);
            ns2.Adopt("xvs-up-2", "198.18.40.2/24");

            ns1.Exec("ping", "-c", "3", "-i", "0.2", "-W", "2", "198.18.40.2");
            ns2.Exec("ping", "-c", "2", "-i", "0.2", "-W", "2", "198.18.40.1");
            Assert.True(uplink.Counters.RxPackets >= 3);
            Assert.True(uplink.Counters.TxPackets >= 3);

            using var server = ns2.Start("iperf3", "-s", "-1", "-B", "198.18.40.2");
            Thread.Sleep(300);
            var (code, output) = ns1.TryExec("iperf3", "-c", "198.18.40.2", "-t", "1");
            server.WaitForExit(10_000);
            Assert.True(code == 0, output);
            var drops = uplink.Counters.DropsByReason().Concat(tap.Counters.DropsByReason()).Where(d => d.Key != DropReason.LinkDown).ToList();
            Assert.True(drops.Count == 0, $"drops: {string.Join(", ", drops)}");
        }
        finally
        {
            Netns.Run("ip", ["link", "del", "xvs-upl"], allowFailure: true);
        }
    }
}
