using XenIo.Net.Tap;
using XenIo.Tests;
using XenIo.VSwitch.Core;
using XenIo.VSwitch.Ports;
using Xunit;

namespace XenIo.Integration.Tests.VSwitch;

public class InternalPortTests
{
    /// <summary>
    /// The host-side interface of a bridge stays in the host's namespace (no address is given to it here,
    /// by the rule that tests only address their own namespaces): frames the bridge floods reach the host
    /// stack, as its receive counter shows.
    /// </summary>
    [SkippableFact]
    public void Frames_flooded_on_the_bridge_reach_the_host_interface()
    {
        Requires.Root();
        using var loop = new EpollLoop("vswitch-internal-test");
        var bridge = new Bridge("xbr-int");
        using var host = new InternalPort(TapDevice.Create("xvs-int0"), loop);
        var peer = new CraftedPort("peer");
        bridge.AddPort(host);
        bridge.AddPort(peer);
        Assert.Equal("internal", host.Kind);
        Netns.Run("ip", "link", "set", "xvs-int0", "up");
        var counter = "/sys/class/net/xvs-int0/statistics/rx_packets";
        var before = long.Parse(File.ReadAllText(counter).Trim());
        var frame = new byte[60];
        frame.AsSpan(0, 6).Fill(0xFF);
        frame[6] = 2;
        frame[11] = 0x42;
        frame[12] = 0x88;
        frame[13] = 0xB5;
        for (var i = 0; i < 5; i++) peer.Inject(frame);
        Assert.Equal(5, host.Counters.TxPackets);
        Assert.Equal(before + 5, long.Parse(File.ReadAllText(counter).Trim()));
    }
}
