using XenIo.Net.Frames;
using XenIo.VSwitch.Core;
using Xunit;
using static XenIo.VSwitch.Tests.Core.Frame;

namespace XenIo.VSwitch.Tests.Core;

public class VlanTests
{
    private readonly Bridge _bridge = new("br0", time: new ManualTime());
    private readonly RecordingPort _a10 = new("a10"), _b10 = new("b10"), _c20 = new("c20"), _trunk = new("trunk");

    public VlanTests()
    {
        _a10.Vlan = PortVlan.Access(10);
        _b10.Vlan = PortVlan.Access(10);
        _c20.Vlan = PortVlan.Access(20);
        _trunk.Vlan = PortVlan.Trunk(VlanSet.Parse("10,20"));
        foreach (var p in new[] { _a10, _b10, _c20, _trunk }) _bridge.AddPort(p);
    }

    [Fact]
    public void Access_ports_in_different_vlans_cannot_reach_each_other_while_a_trunk_carries_both_tagged()
    {
        var fromA = Build(Broadcast, Mac(1));
        _a10.Inject(fromA);
        Assert.Equal(fromA, _b10.Single());
        Assert.Empty(_c20.Sent);
        var onTrunk = _trunk.Single();
        Assert.Equal(10, Vid(onTrunk));
        Assert.Equal(fromA, Untag(onTrunk));

        _c20.Inject(Build(Broadcast, Mac(3)));
        Assert.Single(_b10.Sent);
        Assert.Equal(2, _trunk.Sent.Count);
        Assert.Equal(20, Vid(_trunk.Sent[1].Frame));

        // unicast to a MAC learned in VLAN 10 from VLAN 20 still does not cross
        _c20.Inject(Build(Mac(1), Mac(3)));
        Assert.Empty(_a10.Sent);
    }

    [Fact]
    public void Tagged_frames_from_the_trunk_are_popped_onto_access_ports_of_their_vlan_only()
    {
        var tagged = Build(Broadcast, Mac(9), vid: 20, pcp: 5);
        _trunk.Inject(tagged);
        Assert.Empty(_a10.Sent);
        Assert.Empty(_b10.Sent);
        Assert.Equal(Untag(tagged), _c20.Single());
    }

    [Fact]
    public void Tags_are_pushed_with_the_frame_priority_kept()
    {
        var trunk2 = new RecordingPort("trunk2") { Vlan = PortVlan.Trunk(VlanSet.All) };
        _bridge.AddPort(trunk2);
        var tagged = Build(Broadcast, Mac(9), vid: 20, pcp: 5);
        _trunk.Inject(tagged);
        Assert.Equal(tagged, trunk2.Single());
    }

    [Fact]
    public void Tagged_frames_on_access_ports_and_disallowed_vids_on_trunks_are_dropped()
    {
        _a10.Inject(Build(Broadcast, Mac(1), vid: 10));
        _trunk.Inject(Build(Broadcast, Mac(2), vid: 30));
        _trunk.Inject(Build(Broadcast, Mac(2))); // untagged on a trunk without VLAN 0
        _trunk.Inject(Build(Broadcast, Mac(2), vid: 4095));
        Assert.Equal(1, _a10.Counters.Drops(DropReason.Vlan));
        Assert.Equal(3, _trunk.Counters.Drops(DropReason.Vlan));
        Assert.Empty(_b10.Sent);
        Assert.Empty(_c20.Sent);
    }

    [Fact]
    public void A_priority_tag_counts_as_untagged()
    {
        _a10.Inject(Build(Broadcast, Mac(1), vid: 0, pcp: 3));
        Assert.Equal(Untag(Build(Broadcast, Mac(1), vid: 0)), _b10.Single());
    }

    [Fact]
    public void Native_untagged_and_native_tagged_ports()
    {
        var nu = new RecordingPort("nu") { Vlan = PortVlan.NativeUntagged(10, VlanSet.Parse("20")) };
        var nt = new RecordingPort("nt") { Vlan = PortVlan.NativeTagged(10, VlanSet.Parse("20")) };
        _bridge.AddPort(nu);
        _bridge.AddPort(nt);

        var plain = Build(Broadcast, Mac(1));
        _a10.Inject(plain);
        Assert.Equal(plain, nu.Single());            // native VLAN leaves untagged
        Assert.Equal(10, Vid(nt.Single()));          // or tagged
        nu.Clear(); nt.Clear(); _b10.Clear(); _c20.Clear(); _trunk.Clear();

        nu.Inject(Build(Broadcast, Mac(5)));          // untagged in → native VLAN 10
        Assert.Single(_b10.Sent);
        Assert.Empty(_c20.Sent);
        nt.Inject(Build(Broadcast, Mac(6), vid: 20)); // tagged 20 in
        Assert.Single(_c20.Sent);
        Assert.Equal(20, Vid(nu.Sent.Last().Frame));  // non-native VLANs leave tagged
        nt.Inject(Build(Broadcast, Mac(6), vid: 30)); // not allowed
        Assert.Equal(1, nt.Counters.Drops(DropReason.Vlan));
    }

    [Fact]
    public void Default_ports_form_the_untagged_vlan_zero()
    {
        var d1 = new RecordingPort("d1");
        var d2 = new RecordingPort("d2");
        _bridge.AddPort(d1);
        _bridge.AddPort(d2);
        var plain = Build(Broadcast, Mac(1));
        d1.Inject(plain);
        Assert.Equal(plain, d2.Single());
        Assert.Empty(_a10.Sent);
        Assert.Empty(_trunk.Sent);
    }

    [Fact]
    public void The_same_mac_in_two_vlans_is_two_entries()
    {
        _a10.Inject(Build(Broadcast, Mac(1)));
        _c20.Inject(Build(Broadcast, Mac(1)));
        Assert.Equal(_a10.Index, _bridge.Fdb.Lookup(Mac(1), 10));
        Assert.Equal(_c20.Index, _bridge.Fdb.Lookup(Mac(1), 20));
        Assert.Equal(0, _bridge.Fdb.FlapsDamped);
    }

    [Fact]
    public void Vlan_sets_parse_ranges()
    {
        var set = VlanSet.Parse("1, 5-7,4094");
        Assert.True(set.Contains(6));
        Assert.False(set.Contains(8));
        Assert.Equal("1,5-7,4094", set.ToString());
        Assert.Throws<FormatException>(() => VlanSet.Parse("4095"));
        Assert.Throws<ArgumentOutOfRangeException>(() => PortVlan.Access(0));
    }

    [Theory]
    [InlineData("0-100000000", "100000000")]
    [InlineData("1-2147483647", "2147483647")]
    [InlineData("10,4000-4095", "4095")]
    [InlineData("99999999999", "99999999999")]
    [InlineData("-5", "")]
    [InlineData("20-10", "20-10")]
    [InlineData("1-x", "x")]
    public void Vlan_ranges_are_checked_before_they_are_expanded(string text, string named)
    {
        // A range from xenstore or --trunks used to be listed id by id first: 921 MB for 0-100000000, OOM beyond.
        var before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<FormatException>(() => VlanSet.Parse(text));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, "parsing allocated 1 MB or more");
        Assert.Contains($"'{named}'", e.Message);
        Assert.Contains("0-4094", e.Message);
    }

    [Fact]
    public void A_partial_checksum_window_follows_the_tag_pop_and_push()
    {
        var nt = new RecordingPort("nt2") { Vlan = PortVlan.Trunk(VlanSet.All), Offloads = true };
        _bridge.AddPort(nt);
        var tagged = Build(Broadcast, Mac(4), payload: 200, vid: 10);
        var metadata = new FrameMetadata { Checksum = ChecksumState.Partial, CsumStart = 18 + 20, CsumOffset = 16 };
        _trunk.Inject(tagged, metadata);
        Assert.Equal(tagged, nt.Single());
        Assert.Equal(38, nt.Sent[0].Metadata.CsumStart);
    }

    public static TheoryData<PortVlan> Configs => new()
    {
        PortVlan.Default, PortVlan.Access(10), PortVlan.Trunk(VlanSet.Parse("0,5")), PortVlan.Trunk(VlanSet.Parse("5-7")),
        PortVlan.NativeTagged(4, VlanSet.Parse("9")), PortVlan.NativeUntagged(4, VlanSet.Parse("0,9")),
    };

    [Theory]
    [MemberData(nameof(Configs))]
    public void The_untagged_egress_vlan_is_the_one_egress_sends_untagged(PortVlan config)
    {
        var untagged = Enumerable.Range(0, 4096).Where(v => config.Egress(v) == VlanEgress.Untagged).ToArray();
        Assert.Equal(untagged.Length == 0 ? -1 : Assert.Single(untagged), config.UntaggedEgressVlan);
    }
}
