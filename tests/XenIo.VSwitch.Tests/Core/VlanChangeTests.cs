using XenIo.VSwitch.Core;
using Xunit;
using static XenIo.VSwitch.Tests.Core.Frame;

namespace XenIo.VSwitch.Tests.Core;

/// <summary>
/// The bridge keeps per-port VLAN decisions precomputed for the hot path: these check that they follow
/// a port's configuration when it changes at runtime, and the known-unicast paths that use them.
/// </summary>
public class VlanChangeTests
{
    private readonly Bridge _bridge = new("br0", time: new ManualTime());
    private readonly RecordingPort _a = new("a"), _b = new("b"), _trunk = new("trunk");

    public VlanChangeTests()
    {
        _a.Vlan = PortVlan.Access(10);
        _b.Vlan = PortVlan.Access(10);
        _trunk.Vlan = PortVlan.Trunk(VlanSet.Parse("10,20"));
        foreach (var p in new[] { _a, _b, _trunk }) _bridge.AddPort(p);
    }

    [Fact]
    public void A_port_moved_to_another_vlan_at_runtime_leaves_the_old_one_and_joins_the_new()
    {
        _b.Inject(Build(Broadcast, Mac(2)));
        _a.Inject(Build(Mac(2), Mac(1)));
        _b.Single();
        _a.Clear();
        _b.Clear();
        _trunk.Clear();

        _b.Vlan = PortVlan.Access(20);
        // Known unicast for b's old VLAN is no longer delivered to b (its entry was flushed; it floods in VLAN 10 only).
        _a.Inject(Build(Mac(2), Mac(1)));
        Assert.Empty(_b.Sent);
        Assert.Equal(10, Vid(_trunk.Single()));
        _trunk.Clear();

        // Frames b sends now belong to VLAN 20: tagged 20 on the trunk, never on a.
        var fromB = Build(Broadcast, Mac(2));
        _b.Inject(fromB);
        Assert.Empty(_a.Sent);
        var onTrunk = _trunk.Single();
        Assert.Equal(20, Vid(onTrunk));
        Assert.Equal(fromB, Untag(onTrunk));
        Assert.Equal(0, _b.Counters.TotalDrops);
    }

    [Fact]
    public void Known_unicast_to_a_trunk_is_tagged_and_from_a_trunk_is_popped()
    {
        _trunk.Inject(Build(Broadcast, Mac(9), vid: 10, pcp: 3));
        _a.Clear();
        _b.Clear();

        var toTrunk = Build(Mac(9), Mac(1));
        _a.Inject(toTrunk);
        Assert.Empty(_b.Sent);
        var tagged = _trunk.Single();
        Assert.Equal(10, Vid(tagged));
        Assert.Equal(toTrunk, Untag(tagged));

        var fromTrunk = Build(Mac(1), Mac(9), vid: 10);
        _trunk.Inject(fromTrunk);
        Assert.Equal(Untag(fromTrunk), _a.Single());
        Assert.Empty(_b.Sent);
        Assert.Equal(0, _bridge.Flooded - 1);
    }
}
