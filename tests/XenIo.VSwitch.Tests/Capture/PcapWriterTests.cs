using System.Buffers.Binary;
using XenIo.VSwitch.Capture;
using Xunit;

namespace XenIo.VSwitch.Tests.Capture;

public class PcapWriterTests
{
    [Theory]
    [InlineData(true, new byte[] { 0x4D, 0x3C, 0xB2, 0xA1 }, 123456789u)]
    [InlineData(false, new byte[] { 0xD4, 0xC3, 0xB2, 0xA1 }, 123456u)]
    public void Header_and_record_bytes(bool ns, byte[] magic, uint fraction)
    {
        var stream = new MemoryStream();
        var writer = new PcapWriter(stream, snaplen: 100, nanoseconds: ns);
        var frame = Enumerable.Range(0, 150).Select(i => (byte)i).ToArray();
        writer.Write(1_700_000_000_123_456_789, frame, frame.Length);
        var bytes = stream.ToArray();
        Assert.Equal(24 + 16 + 100, bytes.Length);
        Assert.Equal(magic, bytes[..4]);
        Assert.Equal(new byte[] { 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0, 1, 0, 0, 0 }, bytes[4..24]);
        Assert.Equal(1_700_000_000u, BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(24)));
        Assert.Equal(fraction, BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(28)));
        Assert.Equal(100u, BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(32)));
        Assert.Equal(150u, BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(36)));
        Assert.Equal(frame[..100], bytes[40..]);
    }

    [Fact]
    public void Pcapng_blocks_are_framed_and_padded()
    {
        var stream = new MemoryStream();
        var writer = new PcapNgWriter(stream);
        Assert.Equal(0, writer.AddInterface("br0/p1"));
        writer.Write(0, 5_000_000_001, new byte[] { 1, 2, 3, 4, 5 }, 5, PcapNgWriter.FlagOutbound);
        var bytes = stream.ToArray();
        var offset = 0;
        var types = new List<uint>();
        while (offset < bytes.Length)
        {
            var type = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(offset));
            var length = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(offset + 4));
            Assert.Equal(0, length % 4);
            Assert.Equal(length, BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(offset + length - 4)));
            types.Add(type);
            if (type == 6)
            {
                Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(offset + 12))); // ts high
                Assert.Equal(705_032_705u, BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(offset + 16)));
                Assert.Equal(new byte[] { 1, 2, 3, 4, 5, 0, 0, 0 }, bytes[(offset + 28)..(offset + 36)]);
                Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(offset + 40))); // epb_flags outbound
            }
            offset += length;
        }
        Assert.Equal(new uint[] { 0x0A0D0D0A, 1, 6 }, types);
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.Write(1, 0, new byte[1], 1, 1));
    }
}
