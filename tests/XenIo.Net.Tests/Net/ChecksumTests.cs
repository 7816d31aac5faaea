using System.Buffers.Binary;
using PacketDotNet;
using XenIo.Net.Frames;
using XenIo.Net.Offload;
using Xunit;

namespace XenIo.Net.Tests.Net;

public class ChecksumTests
{
    /// <summary>RFC 1071 done the slow, obvious way: 16-bit big-endian words, carries folded as they come.</summary>
    private static ushort Reference(ReadOnlySpan<byte> data)
    {
        uint sum = 0;
        for (var i = 0; i + 1 < data.Length; i += 2) sum += (uint)(data[i] << 8 | data[i + 1]);
        if (data.Length % 2 == 1) sum += (uint)data[^1] << 8;
        while (sum >> 16 != 0) sum = (sum & 0xFFFF) + (sum >> 16);
        return (ushort)~sum;
    }

    [Fact]
    public void Matches_the_reference_on_every_length_and_alignment()
    {
        var random = new Random(42);
        var buffer = new byte[3000];
        random.NextBytes(buffer);
        for (var length = 0; length < 300; length++)
        for (var start = 0; start < 8; start++)
            Assert.Equal(Reference(buffer.AsSpan(start, length)), InternetChecksum.Compute(buffer.AsSpan(start, length)));
        // all-ones data exercises every carry
        var ones = Enumerable.Repeat((byte)0xFF, 2001).ToArray();
        Assert.Equal(Reference(ones), InternetChecksum.Compute(ones));
    }

    [Theory]
    [InlineData(false, false, 1)]
    [InlineData(false, false, 1460)]
    [InlineData(false, true, 0)]
    [InlineData(false, true, 513)]
    [InlineData(true, false, 77)]
    [InlineData(true, true, 1200)]
    public void Transport_checksum_equals_packetdotnet(bool ipv6, bool udp, int payloadLength)
    {
        var reference = udp ? TestFrames.Udp(ipv6, TestFrames.Payload(payloadLength, payloadLength)) : TestFrames.Tcp(ipv6, TestFrames.Payload(payloadLength, payloadLength));
        var expected = reference.Bytes;
        var ours = (byte[])expected.Clone();
        Assert.True(FrameLayout.TryParse(ours, out var layout));
        var field = layout.L4Offset + (udp ? 6 : 16);
        ours[field] = 0xDE;
        ours[field + 1] = 0xAD;
        Assert.True(TransportChecksum.WriteTransportChecksum(ours, layout));
        Assert.Equal(expected, ours);
        Assert.True(TransportChecksum.VerifyTransportChecksum(ours, layout));
        ours[^1] ^= 0x55;
        if (payloadLength > 0) Assert.False(TransportChecksum.VerifyTransportChecksum(ours, layout));
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public void Partial_checksum_completion_equals_packetdotnet(bool ipv6, bool udp)
    {
        var reference = udp ? TestFrames.Udp(ipv6, TestFrames.Payload(999, 5)) : TestFrames.Tcp(ipv6, TestFrames.Payload(999, 5));
        var expected = reference.Bytes;
        var frame = (byte[])expected.Clone();
        Assert.True(FrameLayout.TryParse(frame, out var layout));
        var csumOffset = udp ? 6 : 16;
        // What a sender with checksum offload puts there: the folded pseudo-header sum, not complemented.
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(layout.L4Offset + csumOffset), TransportChecksum.PartialSeed(frame, layout));
        Assert.True(TransportChecksum.CompletePartial(frame, layout.L4Offset, csumOffset));
        Assert.Equal(expected, frame);
    }

    [Fact]
    public void Partial_window_outside_the_frame_is_refused()
    {
        var frame = new byte[60];
        Assert.False(TransportChecksum.CompletePartial(frame, 50, 9));
        Assert.False(TransportChecksum.CompletePartial(frame, -1, 0));
    }

    [Fact]
    public void Ipv4_header_checksum_equals_packetdotnet()
    {
        var reference = TestFrames.Tcp(false, TestFrames.Payload(10, 1));
        var expected = reference.Bytes;
        var ours = (byte[])expected.Clone();
        ours[24] = 0x12;
        ours[25] = 0x34;
        TransportChecksum.WriteIPv4HeaderChecksum(ours, 14);
        Assert.Equal(expected, ours);
        Assert.True(((IPv4Packet)reference.PayloadPacket).ValidIPChecksum);
    }
}
