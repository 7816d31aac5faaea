using XenIo.Net.Frames;
using Xunit;

namespace XenIo.Net.Tests.Net;

public class VirtioNetHeaderTests
{
    [Fact]
    public void Encodes_every_field_little_endian_at_its_offset()
    {
        var header = new VirtioNetHeader { Flags = 1, GsoType = 4, HdrLen = 0x0102, GsoSize = 0x0304, CsumStart = 0x0506, CsumOffset = 0x0708, NumBuffers = 0x090A };
        var bytes = new byte[12];
        header.Write(bytes);
        Assert.Equal(new byte[] { 1, 4, 0x02, 0x01, 0x04, 0x03, 0x06, 0x05, 0x08, 0x07, 0x0A, 0x09 }, bytes);
        Assert.True(VirtioNetHeader.TryRead(bytes, out var back));
        Assert.Equal(header, back);
    }

    [Fact]
    public void Short_input_is_refused()
    {
        Assert.False(VirtioNetHeader.TryRead(new byte[11], out _));
    }

    [Fact]
    public void Gso_tcpv4_with_partial_checksum_becomes_metadata_and_back()
    {
        var header = new VirtioNetHeader { Flags = VirtioNetHeader.FlagNeedsCsum, GsoType = VirtioNetHeader.GsoTcpV4, HdrLen = 66, GsoSize = 1448, CsumStart = 34, CsumOffset = 16 };
        Assert.True(header.TryToMetadata(65000, 3, out var meta));
        Assert.Equal(GsoType.TcpV4, meta.Gso);
        Assert.Equal(1448, meta.GsoSize);
        Assert.Equal(ChecksumState.Partial, meta.Checksum);
        Assert.Equal(34, meta.CsumStart);
        Assert.Equal(16, meta.CsumOffset);
        Assert.Equal(3, meta.IngressPort);
        Assert.Equal(65000, meta.Length);
        Assert.Equal(header, VirtioNetHeader.FromMetadata(meta));
    }

    [Fact]
    public void Data_valid_becomes_validated()
    {
        var header = new VirtioNetHeader { Flags = VirtioNetHeader.FlagDataValid };
        Assert.True(header.TryToMetadata(100, 0, out var meta));
        Assert.Equal(ChecksumState.Validated, meta.Checksum);
        Assert.False(meta.IsGso);
    }

    [Theory]
    [InlineData(VirtioNetHeader.FlagNeedsCsum, VirtioNetHeader.GsoUdp, 1400, 34, 6)] // UDP GSO: netif has no such type
    [InlineData(VirtioNetHeader.FlagNeedsCsum, 7, 1400, 34, 16)]                      // unknown GSO type
    [InlineData(0, VirtioNetHeader.GsoTcpV4, 1400, 0, 0)]                             // GSO without partial checksum
    [InlineData(VirtioNetHeader.FlagNeedsCsum, VirtioNetHeader.GsoTcpV4, 0, 34, 16)]  // GSO without size
    [InlineData(VirtioNetHeader.FlagNeedsCsum, VirtioNetHeader.GsoTcpV4, 1, 34, 16)]  // GSO size 1: 65,535 segments from a 64 KiB frame
    [InlineData(VirtioNetHeader.FlagNeedsCsum, VirtioNetHeader.GsoTcpV6, 47, 54, 16)] // just below the segmenter's floor of 48
    [InlineData(VirtioNetHeader.FlagNeedsCsum, 0, 0, 90, 16)]                         // checksum window past the end
    [InlineData(0x40, 0, 0, 0, 0)]                                                   // unknown flag
    public void Hostile_headers_are_refused(byte flags, byte gso, ushort gsoSize, ushort start, ushort offset)
    {
        var header = new VirtioNetHeader { Flags = flags, GsoType = gso, GsoSize = gsoSize, CsumStart = start, CsumOffset = offset };
        Assert.False(header.TryToMetadata(100, 0, out _));
    }
}
