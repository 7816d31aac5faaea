using System.Buffers.Binary;
using PacketDotNet;
using XenIo.Net.Frames;
using XenIo.Net.Offload;
using Xunit;

namespace XenIo.Net.Tests.Net;

public class TcpSegmenterTests
{
    private sealed class Collect : ISegmentSink
    {
        public readonly List<byte[]> Segments = [];
        public void OnSegment(ReadOnlySpan<byte> segment) => Segments.Add(segment.ToArray());
    }

    [Theory]
    [InlineData(false, 10000, 1448)]
    [InlineData(true, 10000, 1428)]
    [InlineData(false, 64000, 1448)]
    [InlineData(true, 1448, 1448)]
    [InlineData(false, 1, 1448)]
    [InlineData(false, 3000, 1000)]
    public void Segments_equal_frames_built_by_packetdotnet(bool ipv6, int payloadLength, ushort mss)
    {
        var payload = TestFrames.Payload(payloadLength, payloadLength);
        const uint seq = 0xFFFFF000; // wraps during the run
        const ushort ipId = 0xFFFE;  // wraps too
        var gso = TestFrames.Tcp(ipv6, payload, seq, ipId, fin: true, psh: true, cwr: true).Bytes;
        Assert.True(FrameLayout.TryParse(gso, out var layout));
        // As a TAP hands it over: partial checksum seeded with the pseudo-header sum.
        BinaryPrimitives.WriteUInt16BigEndian(gso.AsSpan(layout.L4Offset + 16), TransportChecksum.PartialSeed(gso, layout));
        var meta = new FrameMetadata { Length = gso.Length, Gso = ipv6 ? GsoType.TcpV6 : GsoType.TcpV4, GsoSize = mss, Checksum = ChecksumState.Partial, CsumStart = (ushort)layout.L4Offset, CsumOffset = 16 };

        var sink = new Collect();
        var result = TcpSegmenter.Segment(gso, meta, new byte[2000], sink, out var count);
        Assert.Equal(SegmentResult.Ok, result);
        var expectedCount = (payloadLength + mss - 1) / mss;
        Assert.Equal(expectedCount, count);
        Assert.Equal(expectedCount, sink.Segments.Count);
        for (var i = 0; i < count; i++)
        {
            var offset = i * mss;
            var chunk = payload.AsSpan(offset, Math.Min(mss, payloadLength - offset)).ToArray();
            var last = i == count - 1;
            var expected = TestFrames.Tcp(ipv6, chunk, unchecked(seq + (uint)offset), unchecked((ushort)(ipId + i)), fin: last, psh: last, cwr: i == 0).Bytes;
            Assert.Equal(expected, sink.Segments[i]);
        }
    }

    [Fact]
    public void A_udp_frame_is_not_segmented()
    {
        var frame = TestFrames.Udp(false, new byte[3000]).Bytes;
        var meta = new FrameMetadata { Length = frame.Length, Gso = GsoType.TcpV4, GsoSize = 1400 };
        Assert.Equal(SegmentResult.NotTcp, TcpSegmenter.Segment(frame, meta, new byte[2000], new Collect(), out _));
    }

    [Fact]
    public void A_wrong_gso_family_is_malformed()
    {
        var frame = TestFrames.Tcp(true, new byte[3000]).Bytes;
        var meta = new FrameMetadata { Length = frame.Length, Gso = GsoType.TcpV4, GsoSize = 1400 };
        Assert.Equal(SegmentResult.Malformed, TcpSegmenter.Segment(frame, meta, new byte[2000], new Collect(), out _));
    }

    [Fact]
    public void Truncated_and_garbage_frames_are_refused_without_throwing()
    {
        var random = new Random(7);
        var good = TestFrames.Tcp(false, new byte[3000]).Bytes;
        var meta = new FrameMetadata { Gso = GsoType.TcpV4, GsoSize = 1400 };
        for (var cut = 0; cut < 80; cut++)
            Assert.NotEqual(SegmentResult.Ok, TcpSegmenter.Segment(good.AsSpan(0, cut), meta, new byte[2000], new Collect(), out _));
        for (var i = 0; i < 2000; i++)
        {
            var garbage = new byte[random.Next(0, 200)];
            random.NextBytes(garbage);
            if (garbage.Length > 14) { garbage[12] = 0x08; garbage[13] = 0x00; }
            TcpSegmenter.Segment(garbage, meta, new byte[2000], new Collect(), out _);
        }
    }

    [Theory]
    [InlineData(1, false)]
    [InlineData(TcpSegmenter.MinGsoSize - 1, false)]
    [InlineData(TcpSegmenter.MinGsoSize, true)]
    public void A_segment_size_below_linux_tcp_min_snd_mss_is_malformed(ushort mss, bool cut)
    {
        var frame = TestFrames.Tcp(false, new byte[60000]).Bytes;
        var meta = new FrameMetadata { Length = frame.Length, Gso = GsoType.TcpV4, GsoSize = mss };
        var sink = new Collect();
        var result = TcpSegmenter.Segment(frame, meta, new byte[2000], sink, out var segments);
        Assert.Equal(cut ? SegmentResult.Ok : SegmentResult.Malformed, result);
        Assert.Equal(cut ? (60000 + mss - 1) / mss : 0, segments);
        Assert.Equal(segments, sink.Segments.Count);
    }

    /// <summary>
    /// Mutation fuzzing from valid GSO frames (a guest controls every byte and the offload fields): any
    /// header byte flipped, the frame cut anywhere, any segment size and GSO type. Nothing throws, and
    /// what is cut is well formed: each segment within the segment size, parseable, with correct IP and
    /// TCP checksums, and the payloads adding up to the frame's.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Mutated_gso_frames_segment_into_well_formed_segments_or_are_refused(bool ipv6)
    {
        var random = new Random(ipv6 ? 61 : 46);
        var original = TestFrames.Tcp(ipv6, Enumerable.Range(0, 9000).Select(i => (byte)i).ToArray()).Bytes;
        var scratch = new byte[2000];
        int ok = 0;
        for (var round = 0; round < 20000; round++)
        {
            var frame = (byte[])original.Clone();
            // Flip up to three bytes in the headers (Ethernet, IP, TCP: the first 80), sometimes cut the frame.
            for (var flips = random.Next(0, 4); flips > 0; flips--) frame[random.Next(0, 80)] = (byte)random.Next(256);
            var length = random.Next(4) == 0 ? random.Next(0, frame.Length + 1) : frame.Length;
            var meta = new FrameMetadata
            {
                Length = length,
                Gso = random.Next(3) switch { 0 => GsoType.TcpV4, 1 => GsoType.TcpV6, _ => ipv6 ? GsoType.TcpV6 : GsoType.TcpV4 },
                GsoSize = (ushort)(random.Next(2) == 0 ? random.Next(0, 65536) : random.Next(40, 1500)),
            };
            var sink = new Collect();
            var result = TcpSegmenter.Segment(frame.AsSpan(0, length), meta, scratch, sink, out var segments);
            Assert.Equal(result == SegmentResult.Ok ? segments : 0, sink.Segments.Count);
            if (result != SegmentResult.Ok) continue;
            ok++;
            Assert.True(FrameLayout.TryParse(frame.AsSpan(0, length), out var layout));
            var headerLength = layout.L4Offset + (frame[layout.L4Offset + 12] >> 4) * 4;
            var payload = 0;
            foreach (var segment in sink.Segments)
            {
                Assert.InRange(segment.Length - headerLength, 0, meta.GsoSize);
                Assert.True(FrameLayout.TryParse(segment, out var segmentLayout));
                Assert.True(TransportChecksum.VerifyTransportChecksum(segment, segmentLayout));
                if (segmentLayout.IsIPv4) Assert.Equal(0, InternetChecksum.Compute(segment.AsSpan(segmentLayout.L3Offset, (segment[segmentLayout.L3Offset] & 0xF) * 4)));
                payload += segment.Length - headerLength;
            }
            Assert.True(TransportChecksum.TryTransportLength(frame.AsSpan(0, length), layout, out var l4Length));
            Assert.Equal(l4Length - (headerLength - layout.L4Offset), payload);
        }
        Assert.True(ok > 100, $"only {ok} of the mutated frames were cut: the fuzzing does not reach the segmenter's body");
    }

    [Fact]
    public void Too_small_scratch_is_reported()
    {
        var frame = TestFrames.Tcp(false, new byte[3000]).Bytes;
        var meta = new FrameMetadata { Gso = GsoType.TcpV4, GsoSize = 1400 };
        Assert.Equal(SegmentResult.ScratchTooSmall, TcpSegmenter.Segment(frame, meta, new byte[100], new Collect(), out _));
    }

    [Fact]
    public void Layout_sees_through_a_vlan_tag()
    {
        var untagged = TestFrames.Tcp(false, new byte[10]).Bytes;
        var tagged = new byte[untagged.Length + 4];
        untagged.AsSpan(0, 12).CopyTo(tagged);
        tagged[12] = 0x81; tagged[13] = 0x00; tagged[14] = 0x00; tagged[15] = 10;
        untagged.AsSpan(12).CopyTo(tagged.AsSpan(16));
        Assert.True(FrameLayout.TryParse(tagged, out var layout));
        Assert.Equal(18, layout.L3Offset);
        Assert.Equal(38, layout.L4Offset);
        Assert.Equal(EtherTypes.Tcp, layout.L4Protocol);
        Assert.True(TransportChecksum.VerifyTransportChecksum(tagged, layout));
    }
}
