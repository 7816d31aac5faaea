using XenIo.Net.Frames;
using XenIo.Tests;
using XenIo.VSwitch.Capture;
using XenIo.VSwitch.Core;
using XenIo.VSwitch.Tests.Core;
using Xunit;

namespace XenIo.VSwitch.Tests.Capture;

/// <summary>Every capture file we write is read back by tshark, an implementation that is not ours.</summary>
public sealed class CaptureTsharkTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("xenio-capture").FullName;
    private readonly Bridge _bridge = new("br0", time: new ManualTime());
    private readonly RecordingPort _access10 = new("a10") { Vlan = PortVlan.Access(10) };
    private readonly RecordingPort _access20 = new("a20") { Vlan = PortVlan.Access(20) };
    private readonly RecordingPort _trunk = new("trunk") { Vlan = PortVlan.Trunk(VlanSet.Parse("10,20")) };

    public CaptureTsharkTests()
    {
        _bridge.AddPort(_access10);
        _bridge.AddPort(_access20);
        _bridge.AddPort(_trunk);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>2 ICMP + 1 UDP from VLAN 10's access port, 1 ICMP + 1 UDP tagged 20 from the trunk.</summary>
    private void SendMix()
    {
        _access10.Inject(Packets.Icmp(1, 1));
        _access10.Inject(Packets.Udp(1));
        _access10.Inject(Packets.Icmp(1, 2));
        _trunk.Inject(Packets.Tag(Packets.Icmp(3, 3), 20));
        _trunk.Inject(Packets.Tag(Packets.Udp(3), 20));
    }

    [SkippableTheory]
    [InlineData(true)]
    [InlineData(false)]
    public void Pcap_of_a_trunk_shows_the_tags_and_the_timestamps(bool nanoseconds)
    {
        var tshark = Requires.Tool("tshark");
        var file = Path.Combine(_dir, "trunk.pcap");
        using (var mirror = new Mirror("m", new PcapSink(File.Create(file), nanoseconds: nanoseconds), new MirrorSelection(new HashSet<string> { "trunk" }), clock: new SteppingClock()))
        {
            mirror.Attach(_bridge);
            SendMix();
        }
        var rows = Tshark.Fields(tshark, file, null, "frame.time_epoch", "vlan.id", "frame.len", "icmp.ident");
        Assert.Equal(5, rows.Count);
        // trunk sees: three frames of VLAN 10 leaving (tagged), two of VLAN 20 arriving (tagged)
        Assert.Equal(new[] { "10", "10", "10", "20", "20" }, rows.Select(r => r[1]));
        Assert.Equal(nanoseconds ? "1700000000.123456789" : "1700000000.123456000", rows[0][0]);
        Assert.Equal(nanoseconds ? "1700000000.124457578" : "1700000000.124457000", rows[1][0]);
        Assert.Equal((Packets.Icmp(1, 1).Length + 4).ToString(), rows[0][2]);
    }

    [SkippableFact]
    public void Snaplen_cuts_records_and_keeps_the_original_length()
    {
        var tshark = Requires.Tool("tshark");
        var file = Path.Combine(_dir, "snap.pcap");
        using (var mirror = new Mirror("m", new PcapSink(File.Create(file), snaplen: 64), new MirrorSelection(new HashSet<string> { "a10" }), snaplen: 64, clock: new SteppingClock()))
        {
            mirror.Attach(_bridge);
            _access10.Inject(Packets.Icmp(1, 1, payload: 1000));
        }
        var row = Assert.Single(Tshark.Fields(tshark, file, null, "frame.cap_len", "frame.len"));
        Assert.Equal(new[] { "64", (Packets.Icmp(1, 1, payload: 1000).Length).ToString() }, row);
    }

    [SkippableFact]
    public void Pcapng_has_one_interface_per_port_and_the_direction_of_every_packet()
    {
        var tshark = Requires.Tool("tshark");
        var file = Path.Combine(_dir, "all.pcapng");
        using (var mirror = new Mirror("m", new PcapNgSink(File.Create(file)), clock: new SteppingClock()))
        {
            mirror.Attach(_bridge);
            SendMix();
        }
        var rows = Tshark.Fields(tshark, file, null, "frame.interface_name", "frame.packet_flags_direction", "vlan.id", "frame.time_epoch");
        // each of the 5 frames: one ingress record and one egress record (3 from a10 → trunk, 2 from trunk → a20)
        Assert.Equal(10, rows.Count);
        var summary = rows.Select(r => $"{r[0]} {r[1]} {r[2]}").ToList();
        Assert.Equal(3, summary.Count(s => s == "br0/a10 0x00000001 "));
        Assert.Equal(3, summary.Count(s => s == "br0/trunk 0x00000002 10"));
        Assert.Equal(2, summary.Count(s => s == "br0/trunk 0x00000001 20"));
        Assert.Equal(2, summary.Count(s => s == "br0/a20 0x00000002 "));
        Assert.Equal("1700000000.123456789", rows[0][3]);
    }

    /// <summary>libpcap semantics, as tcpdump on the port: a bare <c>icmp</c> does not look inside an 802.1Q tag.</summary>
    [SkippableTheory]
    [InlineData("icmp", new[] { "|1", "|1" })]
    [InlineData("vlan 20 and icmp", new[] { "20|1" })]
    [InlineData("icmp or (vlan and icmp)", new[] { "|1", "|1", "20|1" })]
    [InlineData("udp or (vlan 20 and udp)", new[] { "|17", "20|17" })]
    [InlineData("vlan", new[] { "20|1", "20|17" })]
    [InlineData("ether src 02:00:00:00:00:03", new[] { "20|1", "20|17" })]
    public void A_filter_selects_exactly_the_matching_frames_tagged_ones_included(string filter, string[] expected)
    {
        var tshark = Requires.Tool("tshark");
        var file = Path.Combine(_dir, "filtered.pcap");
        Mirror mirror;
        using (mirror = new Mirror("m", new PcapSink(File.Create(file)), new MirrorSelection(Directions: CaptureDirection.Ingress), filter: filter, clock: new SteppingClock()))
        {
            mirror.Attach(_bridge);
            SendMix();
        }
        var rows = Tshark.Fields(tshark, file, null, "vlan.id", "ip.proto");
        Assert.Equal(expected, rows.Select(r => string.Join("|", r)));
        Assert.Equal(5 - expected.Length, mirror.FilteredOut);
        Assert.Equal(expected.Length, mirror.Captured);
    }

    [SkippableFact]
    public void A_vlan_selection_captures_only_that_vlan()
    {
        var tshark = Requires.Tool("tshark");
        var file = Path.Combine(_dir, "v20.pcap");
        using (var mirror = new Mirror("m", new PcapSink(File.Create(file)), new MirrorSelection(Vlans: VlanSet.Parse("20")), clock: new SteppingClock()))
        {
            mirror.Attach(_bridge);
            SendMix();
        }
        var rows = Tshark.Fields(tshark, file, null, "vlan.id", "frame.number");
        Assert.Equal(new[] { "20", "", "20", "" }, rows.Select(r => r[0])); // in on the trunk (tagged), out on a20 (untagged), twice
    }

    [SkippableFact]
    public void A_tag_carried_in_metadata_is_recorded_and_filtered_as_on_the_wire()
    {
        var tshark = Requires.Tool("tshark");
        var file = Path.Combine(_dir, "metadata-tag.pcap");
        var frame = Packets.Icmp(3, 7);
        using (var mirror = new Mirror("m", new PcapSink(File.Create(file)), new MirrorSelection(new HashSet<string> { "trunk" }, CaptureDirection.Ingress), filter: "vlan 20", clock: new SteppingClock()))
        {
            mirror.Attach(_bridge);
            // A port that hands the switch its tag beside the frame rather than in it.
            var metadata = FrameMetadata.Plain(frame.Length);
            metadata.HasVlan = true;
            metadata.VlanTci = 20;
            _trunk.Inject(frame, metadata);
            Assert.Equal(1, mirror.Captured);
        }
        var rows = Tshark.Fields(tshark, file, null, "vlan.id", "frame.len", "icmp.ident");
        Assert.Equal([$"20|{frame.Length + 4}|7"], rows.Select(r => string.Join("|", r)));
        Assert.Equal(frame, _access20.Sent.Single().Frame);
    }

    [Fact]
    public void A_bad_filter_is_refused_with_a_reason()
    {
        Skip.IfNot(File.Exists("/usr/lib/x86_64-linux-gnu/libpcap.so.0.8") || File.Exists("/usr/lib/aarch64-linux-gnu/libpcap.so.0.8"), "needs libpcap0.8");
        var e = Assert.Throws<ArgumentException>(() => BpfFilter.Compile("icmp and and"));
        Assert.Contains("icmp and and", e.Message);
    }

    [SkippableFact]
    public void A_live_pcap_file_is_readable_after_flush_before_close()
    {
        var tshark = Requires.Tool("tshark");
        var file = Path.Combine(_dir, "live.pcap");
        using var mirror = new Mirror("m", new PcapSink(new FileStream(file, FileMode.Create, FileAccess.Write, FileShare.Read)), clock: new SteppingClock());
        mirror.Attach(_bridge);
        _access10.Inject(Packets.Icmp(1, 1));
        mirror.Flush();
        Assert.Equal(2, Tshark.Fields(tshark, file, null, "frame.number").Count); // in on a10, out on trunk
    }

    [Fact]
    public void Filtering_allocates_nothing_per_frame()
    {
        Skip.IfNot(File.Exists("/usr/lib/x86_64-linux-gnu/libpcap.so.0.8"), "needs libpcap0.8");
        using var filter = BpfFilter.Compile("vlan 10 and icmp");
        var frame = Packets.Tag(Packets.Icmp(1, 1), 10);
        Assert.True(filter.Matches(frame));
        Assert.False(filter.Matches(Packets.Icmp(1, 1)));
        // Judged per frame, not per run: a per-frame allocation would be at least 24 bytes x 100,000 frames.
        const int frames = 100_000;
        var allocated = SteadyStateAllocation.BytesOver(frames, () => filter.Matches(frame));
        Assert.True(allocated < frames / 10, $"{allocated} bytes allocated over {frames} frames");
    }
}

public sealed class GsoCaptureTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("xenio-gso-capture").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>As tcpdump on a TAP shows it: a GSO frame is one record where it crosses whole, segments where it was cut.</summary>
    [SkippableFact]
    public void A_gso_frame_is_one_record_where_it_crosses_whole()
    {
        var tshark = XenIo.Tests.Requires.Tool("tshark");
        var bridge = new Bridge("br0", time: new ManualTime());
        var src = new RecordingPort("src") { Offloads = true };
        var tso = new RecordingPort("tso") { Offloads = true };
        var plain = new RecordingPort("plain");
        foreach (var p in new[] { src, tso, plain }) bridge.AddPort(p);
        var file = Path.Combine(_dir, "gso.pcapng");
        using (var mirror = new Mirror("m", new PcapNgSink(File.Create(file)), clock: new SteppingClock()))
        {
            mirror.Attach(bridge);
            var payload = new byte[20000];
            var tcp = new PacketDotNet.TcpPacket(1, 2) { SequenceNumber = 1, Acknowledgment = true, WindowSize = 100, PayloadData = payload };
            var ip = new PacketDotNet.IPv4Packet(System.Net.IPAddress.Parse("198.18.0.1"), System.Net.IPAddress.Parse("198.18.0.2")) { PayloadPacket = tcp, TimeToLive = 64 };
            var eth = new PacketDotNet.EthernetPacket(System.Net.NetworkInformation.PhysicalAddress.Parse("02-00-00-00-00-01"), System.Net.NetworkInformation.PhysicalAddress.Parse("FF-FF-FF-FF-FF-FF"), PacketDotNet.EthernetType.IPv4) { PayloadPacket = ip };
            eth.UpdateCalculatedValues();
            ip.UpdateIPChecksum();
            var frame = eth.Bytes;
            src.Inject(frame, new XenIo.Net.Frames.FrameMetadata { Checksum = XenIo.Net.Frames.ChecksumState.Partial, CsumStart = 34, CsumOffset = 16, Gso = XenIo.Net.Frames.GsoType.TcpV4, GsoSize = 1448 });
        }
        var rows = Tshark.Fields(tshark, file, null, "frame.interface_name", "frame.len");
        Assert.Single(rows, r => r[0] == "br0/src" && r[1] == "20054");
        Assert.Single(rows, r => r[0] == "br0/tso" && r[1] == "20054");
        Assert.Equal(14, rows.Count(r => r[0] == "br0/plain"));
        Assert.All(rows.Where(r => r[0] == "br0/plain"), r => Assert.True(int.Parse(r[1]) <= 1502));
    }
}
