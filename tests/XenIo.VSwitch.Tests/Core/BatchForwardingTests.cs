using System.Buffers.Binary;
using XenIo.Net.Frames;
using XenIo.VSwitch.Core;
using Xunit;
using static XenIo.VSwitch.Tests.Core.Frame;

namespace XenIo.VSwitch.Tests.Core;

/// <summary>
/// The batch path (one bridge call per burst, with its own passes for plain ports) must do exactly what
/// the frame-by-frame path does: two identical bridges get the same random traffic, one frame at a time
/// and in batches, and every delivered frame, counter and table entry must agree after every batch.
/// </summary>
public class BatchForwardingTests
{
    private sealed class Switch
    {
        public readonly ManualTime Time = new();
        public readonly Bridge Bridge;
        public readonly RecordingPort[] Ports;
        public readonly ThrowingPort Thrower = new("boom");

        public Switch()
        {
            Bridge = new Bridge("br", fdbLimit: 48, time: Time);
            Ports =
            [
                new RecordingPort("trunk"),
                new RecordingPort("acc10") { Offloads = true },
                new RecordingPort("acc20"),
                new RecordingPort("nat10"),
                new RecordingPort("tun1") { Split = true },
                new RecordingPort("tun2") { Split = true },
                new RecordingPort("down"),
                new RecordingPort("small"),
            ];
            foreach (var p in Ports) Bridge.AddPort(p);
            Bridge.AddPort(Thrower);
            Ports[1].Vlan = PortVlan.Access(10);
            Ports[2].Vlan = PortVlan.Access(20);
            Ports[3].Vlan = PortVlan.NativeUntagged(10, VlanSet.Parse("20"));
            Ports[6].AdminUp = false;
            Ports[7].Mtu = 100;
            Thrower.Vlan = PortVlan.Access(10);
            Bridge.Fdb.AddStatic(Mac(40), 10, Ports[1].Index);
        }
    }

    private sealed class ThrowingPort(string name) : SwitchPort(name)
    {
        public long Calls;
        public override string Kind => "test";

        protected internal override DropReason Transmit(ReadOnlySpan<byte> frame, in FrameMetadata metadata)
        {
            Calls++;
            throw new IOException("device gone");
        }

        public void InjectBatch(ReadOnlySpan<PacketBuffer> batch) => Deliver(batch);

        public void Inject(byte[] frame, FrameMetadata metadata)
        {
            var buffer = new byte[PacketBuffer.Headroom + frame.Length];
            frame.CopyTo(buffer, PacketBuffer.Headroom);
            Deliver(buffer, PacketBuffer.Headroom, ref metadata);
        }
    }

    [Theory]
    [InlineData(1, false)]
    [InlineData(2, false)]
    [InlineData(3, false)]
    [InlineData(4, true)]
    [InlineData(5, true)]
    public void Batches_forward_exactly_as_single_frames(int seed, bool scatteredMacs)
    {
        var random = new Random(seed);
        // Numbered MACs land in distinct slots of the table; scattered ones collide, so the batch
        // path's probes walk runs and wrap past the table's end as the general path's do.
        Func<int, ulong> mac = scatteredMacs ? n => (Mac(n) * 0x9E37_79B9_7F4A_7C15UL >> 16) & ~0x0100_0000_0000UL : Mac;
        var longestRun = 0;
        var single = new Switch();
        var batched = new Switch();
        for (var round = 0; round < 300; round++)
        {
            var ingress = random.Next(single.Ports.Length + 1);
            var count = random.Next(1, 100);
            var frames = new List<(byte[] Frame, FrameMetadata Metadata)>();
            for (var i = 0; i < count; i++) frames.Add(RandomFrame(random, mac));
            foreach (var (frame, metadata) in frames)
            {
                if (ingress == single.Ports.Length) single.Thrower.Inject(frame, metadata);
                else single.Ports[ingress].Inject(frame, metadata);
            }
            var batch = frames.Select(f =>
            {
                var buffer = new byte[PacketBuffer.Headroom + f.Frame.Length];
                f.Frame.CopyTo(buffer, PacketBuffer.Headroom);
                var packet = PacketBuffer.Wrap(buffer, PacketBuffer.Headroom, f.Frame.Length);
                packet.Metadata = f.Metadata;
                return packet;
            }).ToArray();
            if (ingress == batched.Ports.Length) batched.Thrower.InjectBatch(batch);
            else batched.Ports[ingress].InjectBatch(batch);

            if (random.Next(8) == 0)
            {
                // The same port change on both: the batch path's per-port shortcuts must follow it.
                var port = random.Next(single.Ports.Length);
                var change = random.Next(4);
                var value = random.Next(3);
                ChangePort(single, port, change, value);
                ChangePort(batched, port, change, value);
            }
            if (random.Next(10) == 0)
            {
                var by = TimeSpan.FromSeconds(random.Next(0, 400));
                single.Time.Advance(by);
                batched.Time.Advance(by);
            }
            AssertSame(single, batched, round);
            longestRun = Math.Max(longestRun, batched.Bridge.Fdb.LongestRun());
        }
        if (scatteredMacs) Assert.True(longestRun > 2, $"the longest run was {longestRun} slots");
        Assert.True(single.Bridge.Flooded > 0 && single.Bridge.Filtered > 0 && single.Bridge.Fdb.Moves > 0 && single.Thrower.Calls > 0);
        Assert.True(single.Ports.Sum(p => p.Counters.Drops(DropReason.Runt) + p.Counters.Drops(DropReason.BadSource) + p.Counters.Drops(DropReason.TooBig)) > 0);
    }

    /// <summary>Admin state, MTU, egress limit or VLAN of one port, set the same way on both switches.</summary>
    private static void ChangePort(Switch sw, int index, int change, int value)
    {
        var port = sw.Ports[index];
        switch (change)
        {
            case 0:
                port.AdminUp = value != 0;
                break;
            case 1:
                port.Mtu = value switch { 0 => 68, 1 => 100, _ => 1500 };
                break;
            case 2:
                // A bucket of two frames' worth that refills slowly: some frames pass, then it drops.
                port.EgressLimit = value == 0 ? null : new RateLimiter(null, new TokenBucket(2, 0, TimeSpan.FromHours(1), sw.Time));
                break;
            default:
                port.Vlan = value switch { 0 => PortVlan.Access(10), 1 => PortVlan.Access(20), _ => PortVlan.Default };
                break;
        }
    }

    private static (byte[], FrameMetadata) RandomFrame(Random random, Func<int, ulong> mac)
    {
        var dst = random.Next(20) switch
        {
            0 => Broadcast,
            1 => 0x0100_5E00_0001UL,
            _ => mac(random.Next(1, 41)),
        };
        var src = random.Next(30) == 0 ? 0x0100_5E00_0002UL : mac(random.Next(1, 41));
        int? vid = random.Next(6) switch { 0 => 10, 1 => 20, 2 => 30, _ => null };
        var payload = random.Next(12) switch { 0 => 0, 1 => 200, _ => 46 };
        var frame = Build(dst, src, payload, vid);
        if (random.Next(25) == 0) frame = frame[..10];
        var metadata = FrameMetadata.Plain(frame.Length);
        if (vid is null && random.Next(15) == 0)
        {
            metadata.HasVlan = true;
            metadata.VlanTci = 20;
        }
        return (frame, metadata);
    }

    private static void AssertSame(Switch a, Switch b, int round)
    {
        Assert.Equal(a.Bridge.Flooded, b.Bridge.Flooded);
        Assert.Equal(a.Bridge.Filtered, b.Bridge.Filtered);
        Assert.Equal(a.Thrower.Calls, b.Thrower.Calls);
        var ports = a.Ports.Cast<SwitchPort>().Append(a.Thrower).Zip(b.Ports.Cast<SwitchPort>().Append(b.Thrower));
        foreach (var (pa, pb) in ports)
        {
            Assert.True(pa.Counters.RxPackets == pb.Counters.RxPackets, $"round {round} {pa.Name} rx {pa.Counters.RxPackets} vs {pb.Counters.RxPackets}");
            Assert.Equal(pa.Counters.RxBytes, pb.Counters.RxBytes);
            Assert.Equal(pa.Counters.TxPackets, pb.Counters.TxPackets);
            Assert.Equal(pa.Counters.TxBytes, pb.Counters.TxBytes);
            foreach (var reason in Enum.GetValues<DropReason>())
                Assert.True(pa.Counters.Drops(reason) == pb.Counters.Drops(reason), $"round {round} {pa.Name} {reason}");
        }
        foreach (var (ra, rb) in a.Ports.Zip(b.Ports))
        {
            Assert.Equal(ra.Sent.Count, rb.Sent.Count);
            for (var i = 0; i < ra.Sent.Count; i++)
            {
                Assert.Equal(ra.Sent[i].Frame, rb.Sent[i].Frame);
                Assert.Equal(ra.Sent[i].Metadata.Length, rb.Sent[i].Metadata.Length);
                Assert.Equal(ra.Sent[i].Metadata.VlanTci, rb.Sent[i].Metadata.VlanTci);
                Assert.Equal(ra.Sent[i].Metadata.IngressPort, rb.Sent[i].Metadata.IngressPort);
            }
        }
        var fa = a.Bridge.Fdb.Snapshot().OrderBy(e => (e.Vlan, e.Mac)).Select(e => (e.Mac, e.Vlan, e.Port, e.Static, e.Age));
        var fb = b.Bridge.Fdb.Snapshot().OrderBy(e => (e.Vlan, e.Mac)).Select(e => (e.Mac, e.Vlan, e.Port, e.Static, e.Age));
        Assert.Equal(fa, fb);
        Assert.Equal(a.Bridge.Fdb.Moves, b.Bridge.Fdb.Moves);
        Assert.Equal(a.Bridge.Fdb.FlapsDamped, b.Bridge.Fdb.FlapsDamped);
        Assert.Equal(a.Bridge.Fdb.NotLearnedFull, b.Bridge.Fdb.NotLearnedFull);
    }
}
