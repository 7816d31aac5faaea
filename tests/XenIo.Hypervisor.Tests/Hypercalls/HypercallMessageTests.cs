using XenIo.Hypervisor.Hypercalls;
using Xunit;

namespace XenIo.Hypervisor.Tests.Hypercalls;

public class HypercallMessageTests
{
    private static byte[] Hex(string hex) => Convert.FromHexString(hex.Replace(" ", ""));

    [Fact]
    public void Alloc_unbound_request_bytes()
    {
        var buffer = new byte[64];
        Span<byte> payload = stackalloc byte[4];
        int n = HypercallMessage.Write(buffer, HypercallOp.EvtchnAllocUnbound, 0x01020304, 0, payload[..HypercallMessage.WriteDomid(payload, 0x1234)]);
        Assert.Equal(Hex("01 01 0400 04030201 00000000 00000000 3412 0000"), buffer[..n]);
    }

    [Fact]
    public void Bind_interdomain_request_and_status_reply_bytes()
    {
        var buffer = new byte[64];
        Span<byte> payload = stackalloc byte[12];
        int n = HypercallMessage.Write(buffer, HypercallOp.EvtchnBindInterdomain, 7, 0, payload[..HypercallMessage.WriteDomidAndU32(payload, 5, 0, 0xAABBCCDD)]);
        Assert.Equal(Hex("01 02 0800 07000000 00000000 00000000 0500 0000 DDCCBBAA"), buffer[..n]);
        n = HypercallMessage.Write(buffer, HypercallOp.EvtchnStatus, 9, 0, payload[..HypercallMessage.WriteStatusReply(payload, 2, 3, 0x40)]);
        Assert.Equal(Hex("01 04 0C00 09000000 00000000 00000000 02000000 0300 0000 40000000"), buffer[..n]);
        Assert.True(HypercallMessage.TryReadHeader(buffer.AsSpan(0, n), out var h));
        Assert.Equal(new HypercallHeader(HypercallOp.EvtchnStatus, 12, 9, 0), h);
        Assert.True(HypercallMessage.TryReadStatusReply(buffer.AsSpan(16, 12), out uint status, out ushort dom, out uint port));
        Assert.Equal((2u, (ushort)3, 0x40u), (status, dom, port));
    }

    [Fact]
    public void Error_reply_carries_negative_errno()
    {
        var buffer = new byte[16];
        HypercallMessage.Write(buffer, HypercallOp.EvtchnClose, 1, -22, default);
        Assert.Equal(Hex("01 03 0000 01000000 EAFFFFFF 00000000"), buffer);
        Assert.True(HypercallMessage.TryReadHeader(buffer, out var h));
        Assert.Equal(-22, h.Result);
    }

    [Fact]
    public void Frame_lists_round_trip_and_are_bounded()
    {
        var payload = new byte[4 + 4 * HypercallMessage.MaxFrames];
        uint[] frames = [1, 0x01020304, 4095];
        int n = HypercallMessage.WriteFrames(payload, frames);
        Assert.Equal(Hex("03000000 01000000 04030201 FF0F0000"), payload[..n]);
        var read = new uint[HypercallMessage.MaxFrames];
        Assert.Equal(3, HypercallMessage.TryReadFrames(payload.AsSpan(0, n), read));
        Assert.Equal(frames, read[..3]);
        Assert.Equal(-1, HypercallMessage.TryReadFrames(payload.AsSpan(0, n - 1), read));
        Assert.Equal(-1, HypercallMessage.TryReadFrames(Hex("00000000"), read));
        Assert.Equal(-1, HypercallMessage.TryReadFrames(Hex("01020000 00000000"), read)); // 513 frames claimed
        Assert.Equal(-1, HypercallMessage.TryReadFrames(Hex("02000000 00000000"), read)); // claims 2, carries 1
        Assert.Throws<ArgumentOutOfRangeException>(() => HypercallMessage.WriteFrames(payload, new uint[HypercallMessage.MaxFrames + 1]));
    }

    [Theory]
    [InlineData("")]                                               // empty
    [InlineData("01 01 0400 00000000 00000000 00000000 0000")]    // shorter than its length
    [InlineData("02 01 0000 00000000 00000000 00000000")]         // unknown version
    [InlineData("01 00 0000 00000000 00000000 00000000")]         // op 0
    [InlineData("01 0D 0000 00000000 00000000 00000000")]         // op beyond the last
    [InlineData("01 0C 0000 00000000 00000000 01000000")]         // reserved not zero
    [InlineData("01 0C 0100 00000000 00000000 00000000")]         // length claims a byte that is not there
    [InlineData("01 0C 0000 00000000 00000000 00000000 00")]      // trailing byte
    [InlineData("01 0C 0000 00000000 00000000 000000")]           // short header
    public void Malformed_headers_are_rejected(string hex)
    {
        Assert.False(HypercallMessage.TryReadHeader(Hex(hex), out _));
    }

    [Theory]
    [InlineData("3412 0100")]        // padding not zero
    [InlineData("3412")]             // short
    [InlineData("3412 0000 00")]     // long
    public void Malformed_domid_payloads_are_rejected(string hex)
    {
        Assert.False(HypercallMessage.TryReadDomid(Hex(hex), out _));
    }

    [Theory]
    [InlineData("0100 0200 03000000", (ushort)1, false)]   // flag 2 not allowed
    [InlineData("0100 0100 03000000", (ushort)1, true)]
    [InlineData("0100 0100 03000000", (ushort)0, false)]   // bind: no flags at all
    [InlineData("0100 0000 030000", (ushort)1, false)]
    public void Domid_and_value_payload_flags_are_checked(string hex, ushort allowed, bool ok)
    {
        Assert.Equal(ok, HypercallMessage.TryReadDomidAndU32(Hex(hex), allowed, out _, out _, out _));
    }

    [Fact]
    public void Random_bytes_never_throw()
    {
        var rng = new Random(1234);
        var frames = new uint[HypercallMessage.MaxFrames];
        for (int i = 0; i < 20_000; i++)
        {
            var bytes = new byte[rng.Next(0, 64)];
            rng.NextBytes(bytes);
            if (bytes.Length > 0 && rng.Next(2) == 0) bytes[0] = 1;
            if (HypercallMessage.TryReadHeader(bytes, out var h))
            {
                var payload = bytes.AsSpan(HypercallHeader.Size);
                Assert.Equal(h.PayloadLength, payload.Length);
                HypercallMessage.TryReadFrames(payload, frames);
                HypercallMessage.TryReadDomid(payload, out _);
                HypercallMessage.TryReadDomidAndU32(payload, 1, out _, out _, out _);
                HypercallMessage.TryReadStatusReply(payload, out _, out _, out _);
                HypercallMessage.TryReadDomainReply(payload, out _, out _, out _);
            }
        }
    }
}
