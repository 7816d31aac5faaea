using System.Buffers.Binary;
using System.Text;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Transports;
using Xunit;

namespace XenIo.Hypervisor.Tests.Store;

public class CodecTests
{
    [Theory]
    [InlineData("/a/b", "/local/domain/5", true, "/a/b", false)]
    [InlineData("x/y", "/local/domain/5", true, "/local/domain/5/x/y", true)]
    [InlineData("/", "/local/domain/0", true, "/", false)]
    [InlineData("@releaseDomain", "/local/domain/0", true, "@releaseDomain", false)]
    public void CanonicalizeAccepts(string raw, string domainPath, bool allowSpecial, string expected, bool relative)
    {
        var dest = new char[XenstorePath.BufferChars];
        Assert.Equal(XsError.None, XenstorePath.Canonicalize(Encoding.ASCII.GetBytes(raw), domainPath, false, allowSpecial, dest, out var n, out var rel));
        Assert.Equal(expected, new string(dest, 0, n));
        Assert.Equal(relative, rel);
    }

    [Theory]
    [InlineData("/a/")]
    [InlineData("//")]
    [InlineData("/a//b")]
    [InlineData("/a b")]
    [InlineData("/ä")]
    [InlineData("/a\u0001")]
    [InlineData("")]
    [InlineData("x/")]
    public void CanonicalizeRejects(string raw)
    {
        var dest = new char[XenstorePath.BufferChars];
        Assert.Equal(XsError.EINVAL, XenstorePath.Canonicalize(Encoding.UTF8.GetBytes(raw), "/local/domain/1", true, true, dest, out _, out _));
    }

    [Fact]
    public void SpecialPathsOnlyWhereAllowed()
    {
        var dest = new char[XenstorePath.BufferChars];
        Assert.Equal(XsError.EINVAL, XenstorePath.Canonicalize("@introduceDomain"u8, "/local/domain/0", true, false, dest, out _, out _));
    }

    [Theory]
    [InlineData("/local/domain/5/x", 16)]
    [InlineData("/local/domain/12345/x", 20)]
    [InlineData("/local/domain/123456/x", 0)]
    [InlineData("/local/domain/x/y", 0)]
    [InlineData("/local/domain/5", 0)]
    public void LocalOffset(string path, int expected) => Assert.Equal(expected, XenstorePath.LocalOffset(path));

    [Theory]
    [InlineData("/a/b", "/a", true)]
    [InlineData("/a", "/a", true)]
    [InlineData("/ab", "/a", false)]
    [InlineData("/anything", "/", true)]
    [InlineData("/a", "/a/b", false)]
    public void AtOrBelow(string child, string parent, bool expected) => Assert.Equal(expected, XenstorePath.IsAtOrBelow(child, parent));

    [Theory]
    [InlineData("n0", 0, XenstoreAccess.None)]
    [InlineData("r5", 5, XenstoreAccess.Read)]
    [InlineData("w65535", 65535, XenstoreAccess.Write)]
    [InlineData("b12", 12, XenstoreAccess.Both)]
    public void PermissionRoundTrip(string text, int dom, XenstoreAccess access)
    {
        Assert.True(XenstorePermission.TryParse(text, out var p));
        Assert.Equal(new XenstorePermission((ushort)dom, access), p);
        Assert.Equal(text, p.ToString());
        Span<byte> buf = stackalloc byte[8];
        Assert.Equal(text, Encoding.ASCII.GetString(buf[..p.Format(buf)]));
    }

    [Theory]
    [InlineData("x5")]
    [InlineData("r")]
    [InlineData("r65536")]
    [InlineData("r-1")]
    [InlineData("r1a")]
    [InlineData("")]
    public void PermissionRejects(string text) => Assert.False(XenstorePermission.TryParse(text, out _));

    [Fact]
    public void PermissionRules()
    {
        XenstorePermission[] perms = [new(5, XenstoreAccess.Read), new(6, XenstoreAccess.Write), new(7, XenstoreAccess.None)];
        Assert.Equal(XenstoreAccess.Both | XenstoreAccess.Owner, XenstorePermission.For(5, false, perms)); // owner
        Assert.Equal(XenstoreAccess.Both | XenstoreAccess.Owner, XenstorePermission.For(0, true, perms));  // dom0
        Assert.Equal(XenstoreAccess.Write, XenstorePermission.For(6, false, perms));
        Assert.Equal(XenstoreAccess.None, XenstorePermission.For(7, false, perms));
        Assert.Equal(XenstoreAccess.Read, XenstorePermission.For(9, false, perms));                       // default: owner's entry
    }

    [Fact]
    public void HeaderLayoutIsLittleEndian()
    {
        var buf = new byte[16];
        XsdCodec.WriteHeader(buf, XsdSockmsgType.Write, 0x01020304, 7, 9);
        Assert.Equal(new byte[] { 11, 0, 0, 0, 4, 3, 2, 1, 7, 0, 0, 0, 9, 0, 0, 0 }, buf);
        var h = XsdCodec.ReadHeader(buf);
        Assert.Equal((XsdSockmsgType.Write, 0x01020304u, 7u, 9u), (h.Type, h.ReqId, h.TxId, h.Len));
    }

    [Fact]
    public void OneArgNeedsExactlyOneTrailingNul()
    {
        Assert.True(XsdCodec.TryOneArg("abc\0"u8, out var a));
        Assert.Equal("abc"u8.ToArray(), a.ToArray());
        Assert.False(XsdCodec.TryOneArg("abc"u8, out _));
        Assert.False(XsdCodec.TryOneArg("a\0b\0"u8, out _));
        Assert.False(XsdCodec.TryOneArg(""u8, out _));
    }

    [Fact]
    public void ErrorPayloads()
    {
        Assert.Equal("EAGAIN\0"u8.ToArray(), XsErrorNames.Payload(XsError.EAGAIN).ToArray());
        Assert.Equal(XsError.E2BIG, XsErrorNames.Parse("E2BIG\0"u8));
        foreach (var name in XsdErrors.All) Assert.Equal(name, XsErrorNames.Name(XsErrorNames.Parse(Encoding.ASCII.GetBytes(name + "\0"))));
    }

    [Fact]
    public async Task RingStreamCarriesMessagesLargerThanTheRingAcrossWraparound()
    {
        var page = new byte[4096];
        var (d, g) = InMemoryDoorbell.CreatePair();
        var daemon = new XenstoreRingStream(page, d, isDaemon: true);
        var guest = new XenstoreRingStream(page, g, isDaemon: false);
        var rng = new Random(7);
        var data = new byte[10_000];
        rng.NextBytes(data);
        var write = guest.WriteAsync(data, CancellationToken.None).AsTask();
        var got = new byte[data.Length];
        var n = 0;
        while (n < got.Length) n += await daemon.ReadAsync(got.AsMemory(n), CancellationToken.None);
        await write;
        Assert.Equal(data, got);
        Assert.Equal((uint)data.Length, BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(XenstoreDomainInterface.ReqProdOffset)));
        Assert.Equal((uint)data.Length, BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(XenstoreDomainInterface.ReqConsOffset)));
        // And back on the response ring.
        var back = daemon.WriteAsync(data.AsMemory(0, 3000), CancellationToken.None).AsTask();
        n = 0;
        while (n < 3000) n += await guest.ReadAsync(got.AsMemory(n, 3000 - n), CancellationToken.None);
        await back;
        Assert.Equal(data.AsSpan(0, 3000).ToArray(), got.AsSpan(0, 3000).ToArray());
        Assert.Equal(XenstoreLimits.ServerFeatureError, BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(XenstoreDomainInterface.ServerFeaturesOffset)));
        d.Dispose();
    }

    [Fact]
    public async Task RingStreamRejectsAConsumerIndexBeyondTheRing()
    {
        var page = new byte[4096];
        var (d, g) = InMemoryDoorbell.CreatePair();
        var daemon = new XenstoreRingStream(page, d, isDaemon: true);
        BinaryPrimitives.WriteUInt32LittleEndian(page.AsSpan(XenstoreDomainInterface.RspConsOffset), 0xFFFF0000);
        await Assert.ThrowsAsync<XenstoreRingException>(async () => await daemon.WriteAsync(new byte[10], CancellationToken.None));
        Assert.Equal(XenstoreLimits.ErrorRingIdx, BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(XenstoreDomainInterface.ErrorOffset)));
        g.Dispose();
    }
}
