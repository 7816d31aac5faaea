using XenIo.Net.Frames;
using XenIo.VSwitch.Core;
using Xunit;
using static XenIo.VSwitch.Tests.Core.Frame;

namespace XenIo.VSwitch.Tests.Core;

public class BridgeForwardingTests
{
    private readonly ManualTime _time = new();
    private readonly Bridge _bridge;
    private readonly RecordingPort _p1 = new("p1"), _p2 = new("p2"), _p3 = new("p3");

    public BridgeForwardingTests()
    {
        _bridge = new Bridge("br0", time: _time);
        _bridge.AddPort(_p1);
        _bridge.AddPort(_p2);
        _bridge.AddPort(_p3);
    }

    private void ClearAll() { _p1.Clear(); _p2.Clear(); _p3.Clear(); }

    [Fact]
    public void Unknown_unicast_floods_then_learned_addresses_go_to_one_port()
    {
        var ab = Build(Mac(2), Mac(1));
        _p1.Inject(ab);
        Assert.Empty(_p1.Sent);
        Assert.Equal(ab, _p2.Single());
        Assert.Equal(ab, _p3.Single());
        ClearAll();

        var ba = Build(Mac(1), Mac(2));
        _p2.Inject(ba);
        Assert.Equal(ba, _p1.Single());
        Assert.Empty(_p3.Sent);
        ClearAll();

        _p1.Inject(ab);
        Assert.Equal(ab, _p2.Single());
        Assert.Empty(_p3.Sent);
        Assert.Equal(2, _bridge.Fdb.Count);
    }

    [Fact]
    public void Broadcast_and_multicast_flood_to_every_other_port()
    {
        _p2.Inject(Build(Mac(1), Mac(2)));
        ClearAll();
        _p1.Inject(Build(Broadcast, Mac(1)));
        _p1.Inject(Build(0x0100_5E00_0001, Mac(1)));
        Assert.Empty(_p1.Sent);
        Assert.Equal(2, _p2.Sent.Count);
        Assert.Equal(2, _p3.Sent.Count);
    }

    [Fact]
    public void A_frame_for_a_mac_on_its_own_port_is_filtered()
    {
        _p1.Inject(Build(Broadcast, Mac(1)));
        _p1.Inject(Build(Broadcast, Mac(9)));
        ClearAll();
        _p1.Inject(Build(Mac(9), Mac(1)));
        Assert.Empty(_p1.Sent);
        Assert.Empty(_p2.Sent);
        Assert.Equal(1, _bridge.Filtered);
    }

    [Fact]
    public void Entries_age_out_after_300_seconds_by_default()
    {
        _p2.Inject(Build(Broadcast, Mac(2)));
        ClearAll();
        _time.Advance(TimeSpan.FromSeconds(299));
        _p1.Inject(Build(Mac(2), Mac(1)));
        Assert.Single(_p2.Sent);
        Assert.Empty(_p3.Sent);
        ClearAll();
        _time.Advance(TimeSpan.FromSeconds(301));
        _p1.Inject(Build(Mac(2), Mac(1)));
        Assert.Single(_p3.Sent); // flooded again
        Assert.Equal(300, _bridge.Fdb.Aging.TotalSeconds);
    }

    [Fact]
    public void Static_entries_never_age_nor_move_and_flush_keeps_them()
    {
        Assert.True(_bridge.Fdb.AddStatic(Mac(7), 0, _p3.Index));
        _time.Advance(TimeSpan.FromDays(1));
        _p2.Inject(Build(Broadcast, Mac(7))); // learning must not move it
        ClearAll();
        _p1.Inject(Build(Mac(7), Mac(1)));
        Assert.Single(_p3.Sent);
        Assert.Empty(_p2.Sent);
        _bridge.Fdb.Flush();
        Assert.Equal(_p3.Index, _bridge.Fdb.Lookup(Mac(7), 0));
        Assert.Equal(-1, _bridge.Fdb.Lookup(Mac(1), 0));
        _bridge.Fdb.Flush(includeStatic: true);
        Assert.Equal(0, _bridge.Fdb.Count);
    }

    [Fact]
    public void A_batch_from_a_static_mac_on_another_port_does_not_move_it()
    {
        // The batch path takes a source it knows on another port the long way; that way must keep static entries too.
        Assert.True(_bridge.Fdb.AddStatic(Mac(7), 0, _p3.Index));
        _time.Advance(TimeSpan.FromDays(1));
        var toSeven = Build(Mac(7), Mac(2));
        _p2.InjectBatch([Packet(Build(Broadcast, Mac(7))), Packet(toSeven)]);
        Assert.Equal(_p3.Index, _bridge.Fdb.Lookup(Mac(7), 0));
        Assert.Equal(toSeven, _p3.Sent[^1].Frame);
        Assert.Single(_p1.Sent); // the broadcast only
    }

    private static PacketBuffer Packet(byte[] frame)
    {
        var buffer = new byte[PacketBuffer.Headroom + frame.Length];
        frame.CopyTo(buffer, PacketBuffer.Headroom);
        return PacketBuffer.Wrap(buffer, PacketBuffer.Headroom, frame.Length);
    }

    [Fact]
    public void A_mac_moving_within_three_seconds_is_damped_then_moves()
    {
        _p1.Inject(Build(Broadcast, Mac(5)));
        _time.Advance(TimeSpan.FromSeconds(1));
        _p2.Inject(Build(Broadcast, Mac(5)));
        Assert.Equal(_p1.Index, _bridge.Fdb.Lookup(Mac(5), 0));
        Assert.Equal(1, _bridge.Fdb.FlapsDamped);
        _time.Advance(TimeSpan.FromSeconds(2.5));
        _p2.Inject(Build(Broadcast, Mac(5)));
        Assert.Equal(_p2.Index, _bridge.Fdb.Lookup(Mac(5), 0));
        Assert.Equal(1, _bridge.Fdb.Moves);
    }

    [Fact]
    public void A_million_random_source_macs_keep_the_table_at_its_limit_without_allocating()
    {
        var quiet = new Bridge("br1", time: _time);
        var a = new RecordingPort("a", record: false);
        var b = new RecordingPort("b", record: false);
        quiet.AddPort(a);
        quiet.AddPort(b);
        var frame = Build(Mac(99), Mac(1));
        var random = new Random(1);
        var metadata = FrameMetadata.Plain(frame.Length);
        void InjectFromRandomSources(int count)
        {
            for (var i = 0; i < count; i++)
            {
                WriteMac(frame.AsSpan(6), (ulong)random.NextInt64() & 0xFEFF_FFFF_FFFF);
                a.Inject(frame, metadata);
            }
        }
        // warm up every path once
        a.Inject(frame);
        // The table grows with its entries until it holds the limit; from there on nothing is allocated.
        InjectFromRandomSources(100_000);
        Assert.Equal(8192, quiet.Fdb.Count);
        var before = GC.GetAllocatedBytesForCurrentThread();
        InjectFromRandomSources(900_000);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(8192, quiet.Fdb.Count);
        Assert.Equal(2 * 8192, quiet.Fdb.Capacity);
        Assert.True(quiet.Fdb.NotLearnedFull > 900_000);
        Assert.Equal(1_000_001, b.SentCount);
        Assert.True(allocated < 64 * 1024, $"allocated {allocated} bytes over the last 900,000 frames");
    }

    [Fact]
    public void When_full_expired_entries_make_room()
    {
        var small = new Bridge("br2", fdbLimit: 4, time: _time);
        var a = new RecordingPort("a");
        small.AddPort(a);
        for (var i = 0; i < 4; i++) a.Inject(Build(Broadcast, Mac(100 + i)));
        a.Inject(Build(Broadcast, Mac(200)));
        Assert.Equal(-1, small.Fdb.Lookup(Mac(200), 0));
        _time.Advance(TimeSpan.FromSeconds(301));
        a.Inject(Build(Broadcast, Mac(200)));
        Assert.Equal(a.Index, small.Fdb.Lookup(Mac(200), 0));
        Assert.Equal(1, small.Fdb.Count);
    }

    [Fact]
    public void Counters_count_packets_bytes_and_drops_by_reason()
    {
        var f = Build(Broadcast, Mac(1), payload: 100);
        _p1.Inject(f);
        Assert.Equal(1, _p1.Counters.RxPackets);
        Assert.Equal(f.Length, _p1.Counters.RxBytes);
        Assert.Equal(1, _p2.Counters.TxPackets);
        Assert.Equal(f.Length, _p2.Counters.TxBytes);
        _p1.Inject(new byte[10]);
        Assert.Equal(1, _p1.Counters.Drops(DropReason.Runt));
        _p1.Inject(Build(Broadcast, 0x0100_0000_0001));
        Assert.Equal(1, _p1.Counters.Drops(DropReason.BadSource));
        _p3.Result = DropReason.QueueFull;
        _p1.Inject(f);
        Assert.Equal(1, _p3.Counters.Drops(DropReason.QueueFull));
        Assert.Equal(2, _p2.Counters.TxPackets);
    }

    [Fact]
    public void Admin_down_ports_neither_receive_nor_send()
    {
        _p2.AdminUp = false;
        _p1.Inject(Build(Broadcast, Mac(1)));
        Assert.Empty(_p2.Sent);
        Assert.Single(_p3.Sent);
        _p2.Inject(Build(Broadcast, Mac(2)));
        Assert.Equal(1, _p2.Counters.Drops(DropReason.AdminDown));
        Assert.Empty(_p1.Sent);
        _p2.AdminUp = true;
        _p2.Inject(Build(Broadcast, Mac(2)));
        Assert.Single(_p1.Sent);
    }

    [Fact]
    public void Mtu_is_enforced_both_ways_up_to_65535()
    {
        _p1.Inject(Build(Broadcast, Mac(1), payload: 1500));
        Assert.Single(_p2.Sent);
        _p1.Inject(Build(Broadcast, Mac(1), payload: 1501));
        Assert.Equal(1, _p1.Counters.Drops(DropReason.TooBig));
        _p1.Mtu = 65535;
        _p2.Mtu = 65535;
        ClearAll();
        var jumbo = Build(Broadcast, Mac(1), payload: 65535);
        _p1.Inject(jumbo);
        Assert.Equal(jumbo, _p2.Single());
        Assert.Empty(_p3.Sent);
        Assert.Equal(1, _p3.Counters.Drops(DropReason.TooBig));
        Assert.Throws<ArgumentOutOfRangeException>(() => _p1.Mtu = 65536);
    }

    [Fact]
    public void Split_horizon_ports_do_not_flood_to_each_other()
    {
        var t1 = new RecordingPort("vx1") { Split = true };
        var t2 = new RecordingPort("vx2") { Split = true };
        _bridge.AddPort(t1);
        _bridge.AddPort(t2);
        t1.Inject(Build(Broadcast, Mac(1)));
        Assert.Empty(t2.Sent);
        Assert.Single(_p1.Sent);
        _p1.Inject(Build(Broadcast, Mac(2)));
        Assert.Single(t1.Sent, s => s.Frame[11] == 2);
        Assert.Single(t2.Sent);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Split_horizon_ports_do_not_forward_known_unicast_to_each_other(bool batch)
    {
        var t1 = new RecordingPort("vx1") { Split = true };
        var t2 = new RecordingPort("vx2") { Split = true };
        _bridge.AddPort(t1);
        _bridge.AddPort(t2);
        t2.Inject(Build(Broadcast, Mac(2)));
        _p1.Inject(Build(Broadcast, Mac(1)));
        ClearAll();
        t1.Clear();
        t2.Clear();

        var toTunnel = Build(Mac(2), Mac(9));
        var toGuest = Build(Mac(1), Mac(9));
        if (batch) t1.InjectBatch([PacketBuffer.Wrap(Headroomed(toTunnel), PacketBuffer.Headroom, toTunnel.Length), PacketBuffer.Wrap(Headroomed(toGuest), PacketBuffer.Headroom, toGuest.Length)]);
        else
        {
            t1.Inject(toTunnel);
            t1.Inject(toGuest);
        }

        Assert.Empty(t2.Sent);
        Assert.Equal(toGuest, _p1.Single());
        Assert.Equal(1, _bridge.Filtered);
    }

    private static byte[] Headroomed(byte[] frame)
    {
        var buffer = new byte[PacketBuffer.Headroom + frame.Length];
        frame.CopyTo(buffer, PacketBuffer.Headroom);
        return buffer;
    }

    [Fact]
    public void Removing_a_port_forgets_its_macs()
    {
        _p3.Inject(Build(Broadcast, Mac(3)));
        Assert.Equal(_p3.Index, _bridge.Fdb.Lookup(Mac(3), 0));
        Assert.True(_bridge.RemovePort(_p3));
        Assert.Equal(-1, _bridge.Fdb.Lookup(Mac(3), 0));
        Assert.Null(_p3.Bridge);
        ClearAll();
        _p1.Inject(Build(Mac(3), Mac(1)));
        Assert.Single(_p2.Sent);
        Assert.Empty(_p3.Sent);
    }

    [Fact]
    public void Garbage_frames_never_throw()
    {
        var random = new Random(3);
        for (var i = 0; i < 20000; i++)
        {
            var garbage = new byte[random.Next(0, 1600)];
            random.NextBytes(garbage);
            var metadata = FrameMetadata.Plain(garbage.Length);
            if (i % 3 == 0) { metadata.Checksum = ChecksumState.Partial; metadata.CsumStart = (ushort)random.Next(0, 2000); metadata.CsumOffset = (ushort)random.Next(0, 40); }
            if (i % 5 == 0) { metadata.Gso = GsoType.TcpV4; metadata.GsoSize = (ushort)random.Next(0, 2000); }
            _p1.Inject(garbage, metadata);
        }
    }
}
