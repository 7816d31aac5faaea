using System.Buffers.Binary;
using System.Net;
using System.Net.NetworkInformation;
using PacketDotNet;
using XenIo.Net.Frames;
using XenIo.Net.Offload;
using XenIo.VSwitch.Core;
using Xunit;

namespace XenIo.VSwitch.Tests.Core;

public class OffloadTests
{
    private static (byte[] Frame, FrameMetadata Metadata) GsoFrame(int payload, ushort mss)
    {
        var tcp = new TcpPacket(1, 2) { SequenceNumber = 1, Acknowledgment = true, WindowSize = 100, PayloadData = new byte[payload] };
        var ip = new IPv4Packet(IPAddress.Parse("198.18.0.1"), IPAddress.Parse("198.18.0.2")) { PayloadPacket = tcp, TimeToLive = 64 };
        var eth = new EthernetPacket(PhysicalAddress.Parse("02-00-00-00-00-01"), PhysicalAddress.Parse("FF-FF-FF-FF-FF-FF"), EthernetType.IPv4) { PayloadPacket = ip };
        eth.UpdateCalculatedValues();
        ip.UpdateIPChecksum();
        var bytes = eth.Bytes;
        FrameLayout.TryParse(bytes, out var layout);
        BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(layout.L4Offset + 16), TransportChecksum.PartialSeed(bytes, layout));
        var metadata = new FrameMetadata { Checksum = ChecksumState.Partial, CsumStart = (ushort)layout.L4Offset, CsumOffset = 16, Gso = mss > 0 ? GsoType.TcpV4 : GsoType.None, GsoSize = mss, HeaderLength = 54 };
        return (bytes, metadata);
    }

    [Fact]
    public void A_gso_frame_crosses_whole_to_an_offload_port_and_segmented_to_another()
    {
        var bridge = new Bridge("br0", time: new ManualTime());
        var src = new RecordingPort("src") { Offloads = true, Mtu = 1500 };
        var tso = new RecordingPort("tso") { Offloads = true };
        var plain = new RecordingPort("plain");
        var tagged = new RecordingPort("tagged") { Vlan = PortVlan.NativeTagged(7, VlanSet.All) };
        src.Vlan = PortVlan.Access(7);
        tso.Vlan = PortVlan.Access(7);
        plain.Vlan = PortVlan.Access(7);
        foreach (var p in new[] { src, tso, plain, tagged }) bridge.AddPort(p);

        var (frame, metadata) = GsoFrame(60000, 1448);
        src.Inject(frame, metadata);

        var whole = Assert.Single(tso.Sent);
        Assert.Equal(frame, whole.Frame);
        Assert.Equal(GsoType.TcpV4, whole.Metadata.Gso);
        Assert.Equal((60000 + 1447) / 1448, plain.Sent.Count);
        foreach (var (segment, m) in plain.Sent)
        {
            Assert.True(segment.Length <= 1514);
            Assert.False(m.IsGso);
            FrameLayout.TryParse(segment, out var layout);
            Assert.True(TransportChecksum.VerifyTransportChecksum(segment, layout));
            var packet = (EthernetPacket)Packet.ParsePacket(LinkLayers.Ethernet, segment);
            Assert.True(((IPv4Packet)packet.PayloadPacket).ValidIPChecksum);
        }
        Assert.Equal(plain.Sent.Count, tagged.Sent.Count);
        foreach (var (segment, _) in tagged.Sent)
        {
            Assert.Equal(7, Frame.Vid(segment));
            Assert.True(segment.Length <= 1518);
            FrameLayout.TryParse(segment, out var layout);
            Assert.True(TransportChecksum.VerifyTransportChecksum(segment, layout));
        }
        Assert.Equal(plain.Sent.Count, plain.Counters.TxPackets);
    }

    [Fact]
    public void A_partial_checksum_is_completed_for_ports_without_offload_and_left_for_those_with()
    {
        var bridge = new Bridge("br0", time: new ManualTime());
        var src = new RecordingPort("src") { Offloads = true };
        var off = new RecordingPort("off") { Offloads = true };
        var plain = new RecordingPort("plain");
        foreach (var p in new[] { src, off, plain }) bridge.AddPort(p);
        var (frame, metadata) = GsoFrame(1000, 0);
        src.Inject(frame, metadata);
        Assert.Equal(frame, off.Single());
        Assert.Equal(ChecksumState.Partial, off.Sent[0].Metadata.Checksum);
        var completed = plain.Single();
        FrameLayout.TryParse(completed, out var layout);
        Assert.True(TransportChecksum.VerifyTransportChecksum(completed, layout));
        Assert.False(TransportChecksum.VerifyTransportChecksum(frame, layout));
    }

    [Fact]
    public void Bad_offload_metadata_is_counted_as_malformed()
    {
        var bridge = new Bridge("br0", time: new ManualTime());
        var src = new RecordingPort("src");
        var plain = new RecordingPort("plain");
        bridge.AddPort(src);
        bridge.AddPort(plain);
        var frame = Frame.Build(Frame.Broadcast, Frame.Mac(1), payload: 3000);
        src.Mtu = 9000;
        src.Inject(frame, new FrameMetadata { Gso = GsoType.TcpV4, GsoSize = 1000, Checksum = ChecksumState.Partial, CsumStart = 34, CsumOffset = 16 });
        Assert.Empty(plain.Sent);
        Assert.Equal(1, plain.Counters.Drops(DropReason.Malformed));
    }
}
