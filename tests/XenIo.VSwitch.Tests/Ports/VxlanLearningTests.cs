using System.Net;
using System.Net.Sockets;
using XenIo.VSwitch.Core;
using XenIo.VSwitch.Ports;
using XenIo.VSwitch.Tests.Core;
using static XenIo.VSwitch.Tests.Ports.VxlanPortTests;
using Xunit;

namespace XenIo.VSwitch.Tests.Ports;

/// <summary>
/// A VXLAN port learns which remote each MAC lives behind: known unicast goes to that remote alone,
/// everything else to all; entries move, age out and are bounded; detaching forgets them.
/// </summary>
public sealed class VxlanLearningTests : IDisposable
{
    private readonly Socket _r1 = Udp("127.0.0.1");
    private readonly Socket _r2 = Udp("127.0.0.3");
    private readonly ManualTime _time = new();
    private readonly Bridge _bridge = new("br0");
    private readonly QueuePort _local = new("local");
    private readonly VxlanPort _vxlan;

    public VxlanLearningTests()
    {
        _vxlan = new VxlanPort("vx0", new VxlanPortOptions(new IPEndPoint(IPAddress.Loopback, 0), 100,
            [(IPEndPoint)_r1.LocalEndPoint!, new VxlanRemote((IPEndPoint)_r2.LocalEndPoint!, 200)]) { Time = _time, LearningLimit = 16 });
        _bridge.AddPort(_local);
        _bridge.AddPort(_vxlan);
    }

    /// <summary>A frame from <paramref name="mac"/> arriving from remote <paramref name="remote"/> (1 or 2), delivered to the local port.</summary>
    private void Arrive(int remote, ulong mac, ulong to = Frame.Broadcast)
    {
        var frame = Frame.Build(to, mac);
        (remote == 1 ? _r1 : _r2).SendTo(Packet(remote == 1 ? 100 : 200, frame), _vxlan.LocalEndPoint);
        Assert.Equal(frame, _local.Next());
    }

    /// <summary>Which remotes a frame the local port sends reaches, told by a marker broadcast sent after it.</summary>
    private (bool R1, bool R2) Reaches(ulong to)
    {
        var frame = Frame.Build(to, Frame.Mac(900));
        _local.Inject(frame);
        var marker = Frame.Build(Frame.Broadcast, Frame.Mac(901));
        _local.Inject(marker);
        return (Got(_r1, 100, frame, marker), Got(_r2, 200, frame, marker));
    }

    private static bool Got(Socket remote, int vni, byte[] frame, byte[] marker)
    {
        var buffer = new byte[2000];
        var first = buffer[..remote.Receive(buffer)];
        if (first.AsSpan().SequenceEqual(Packet(vni, marker))) return false;
        Assert.Equal(Packet(vni, frame), first);
        Assert.Equal(Packet(vni, marker), buffer[..remote.Receive(buffer)]);
        return true;
    }

    [Fact]
    public void Known_unicast_goes_to_the_remote_it_was_learned_behind_and_the_rest_to_all()
    {
        Assert.Equal((true, true), Reaches(Frame.Mac(1))); // unknown: flooded
        Arrive(1, Frame.Mac(1));
        Arrive(2, Frame.Mac(2));
        Assert.Equal((true, false), Reaches(Frame.Mac(1)));
        Assert.Equal((false, true), Reaches(Frame.Mac(2)));
        Assert.Equal((true, true), Reaches(Frame.Broadcast));
        Assert.Equal((true, true), Reaches(0x0100_5E00_0001)); // multicast
        Assert.Equal((true, true), Reaches(Frame.Mac(3)));

        var entries = _vxlan.Learned.Snapshot(_vxlan.Options).OrderBy(e => e.Mac).ToList();
        Assert.Equal(2, entries.Count);
        Assert.Equal((Frame.Mac(1), 100, (IPEndPoint)_r1.LocalEndPoint!), (entries[0].Mac, entries[0].Vni, entries[0].Remote.EndPoint));
        Assert.Equal((Frame.Mac(2), 200, (IPEndPoint)_r2.LocalEndPoint!), (entries[1].Mac, entries[1].Vni, entries[1].Remote.EndPoint));
    }

    [Fact]
    public void A_mac_that_moves_to_another_remote_follows_after_the_damping_time()
    {
        Arrive(1, Frame.Mac(1));
        _time.Advance(TimeSpan.FromSeconds(1));
        Arrive(2, Frame.Mac(1)); // within 3 s of being learned: damped, stays behind remote 1
        Assert.Equal((true, false), Reaches(Frame.Mac(1)));
        _time.Advance(TimeSpan.FromSeconds(5));
        Arrive(2, Frame.Mac(1));
        Assert.Equal((false, true), Reaches(Frame.Mac(1)));
        Assert.Equal(1, _vxlan.Learned.Moves);
    }

    [Fact]
    public void Entries_age_out_and_the_mac_is_flooded_again()
    {
        Arrive(1, Frame.Mac(1));
        _time.Advance(TimeSpan.FromSeconds(299));
        Assert.Equal((true, false), Reaches(Frame.Mac(1)));
        _time.Advance(TimeSpan.FromSeconds(301));
        Assert.Equal((true, true), Reaches(Frame.Mac(1)));
    }

    [Fact]
    public void Group_sources_and_runts_teach_nothing()
    {
        _r1.SendTo(Packet(100, Frame.Build(Frame.Broadcast, 0x0100_5E00_0009)), _vxlan.LocalEndPoint);
        _r1.SendTo(Packet(100, new byte[10]), _vxlan.LocalEndPoint);
        Arrive(1, Frame.Mac(7)); // after both: the receive loop has handled them
        Assert.Equal(1, _vxlan.Learned.Count);
    }

    [Fact]
    public void A_million_random_macs_fill_the_table_to_its_limit_and_no_further()
    {
        var table = new VtepTable(limit: 4096, time: _time);
        var random = new Random(3);
        for (var i = 0; i < 1_000_000; i++) table.Learn((ulong)random.NextInt64() & 0xFEFF_FFFF_FFFF, random.Next(2));
        Assert.Equal(4096, table.Count);
        Assert.True(table.NotLearnedFull > 900_000);
    }

    [Fact]
    public void Detaching_forgets_what_was_learned()
    {
        Arrive(1, Frame.Mac(1));
        Assert.Equal(1, _vxlan.Learned.Count);
        _bridge.RemovePort(_vxlan);
        Assert.Equal(0, _vxlan.Learned.Count);
    }

    public void Dispose()
    {
        _vxlan.Dispose();
        _r1.Dispose();
        _r2.Dispose();
    }
}
