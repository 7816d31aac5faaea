using XenIo.Net.Frames;
using XenIo.VSwitch.Core;
using XenIo.VSwitch.Ports;
using XenIo.VSwitch.Tests.Core;
using Xunit;

namespace XenIo.VSwitch.Tests.Ports;

public class PatchPortTests
{
    [Fact]
    public void Two_bridges_patched_together_forward_both_ways_and_learn_across()
    {
        var br1 = new Bridge("br1");
        var br2 = new Bridge("br2");
        var h1 = new QueuePort("h1");
        var h2 = new QueuePort("h2");
        var (a, b) = PatchPort.CreatePair("patch-br2", "patch-br1");
        br1.AddPort(h1);
        br1.AddPort(a);
        br2.AddPort(b);
        br2.AddPort(h2);

        var f1 = Frame.Build(Frame.Broadcast, Frame.Mac(1));
        h1.Inject(f1);
        Assert.Equal(f1, h2.Next());
        var f2 = Frame.Build(Frame.Mac(1), Frame.Mac(2));
        h2.Inject(f2);
        Assert.Equal(f2, h1.Next());
        Assert.Equal(a.Index, br1.WithLock(br => br.Fdb.Lookup(Frame.Mac(2), 0)));
        Assert.Equal(b.Index, br2.WithLock(br => br.Fdb.Lookup(Frame.Mac(1), 0)));
        a.Dispose();
        b.Dispose();
    }

    [Fact]
    public void Vlans_carry_across_a_trunk_patch()
    {
        var br1 = new Bridge("br1");
        var br2 = new Bridge("br2");
        var h1 = new QueuePort("h1") { Vlan = PortVlan.Access(10) };
        var h2 = new QueuePort("h2") { Vlan = PortVlan.Access(10) };
        var h3 = new QueuePort("h3") { Vlan = PortVlan.Access(20) };
        var (a, b) = PatchPort.CreatePair("pa", "pb");
        a.Vlan = PortVlan.Trunk(VlanSet.Parse("10,20"));
        b.Vlan = PortVlan.Trunk(VlanSet.Parse("10,20"));
        br1.AddPort(h1);
        br1.AddPort(a);
        br2.AddPort(b);
        br2.AddPort(h2);
        br2.AddPort(h3);
        var f = Frame.Build(Frame.Broadcast, Frame.Mac(1));
        h1.Inject(f);
        Assert.Equal(f, h2.Next());
        Assert.False(h3.Sent.TryTake(out _, TimeSpan.FromMilliseconds(200)));
        a.Dispose();
        b.Dispose();
    }

    [Fact]
    public void A_frame_larger_than_the_patch_buffers_is_too_big_and_never_reaches_the_peer_bridge()
    {
        var br1 = new Bridge("br1");
        var br2 = new Bridge("br2");
        var h2 = new QueuePort("h2");
        var (a, b) = PatchPort.CreatePair("pa", "pb");
        br1.AddPort(a);
        br2.AddPort(b);
        br2.AddPort(h2);

        // A GSO frame at the largest size plus a pushed 802.1Q tag: one byte more than the largest buffer.
        var oversized = Frame.Build(Frame.Broadcast, Frame.Mac(1), payload: EtherTypes.MaxFrameLength + 1 - EtherTypes.EthernetHeaderLength);
        Assert.Equal(DropReason.TooBig, a.Transmit(oversized, FrameMetadata.Plain(oversized.Length)));

        // The queue is in order: the marker is the first thing the peer bridge gets.
        var marker = Frame.Build(Frame.Broadcast, Frame.Mac(2));
        Assert.Equal(DropReason.None, a.Transmit(marker, FrameMetadata.Plain(marker.Length)));
        Assert.Equal(marker, h2.Next());
        Assert.Equal(1, b.Counters.RxPackets);
        Assert.Equal(0, b.Counters.TotalDrops);
        a.Dispose();
        b.Dispose();
    }
}
