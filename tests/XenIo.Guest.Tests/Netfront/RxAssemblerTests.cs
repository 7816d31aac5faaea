using System.Buffers.Binary;
using XenIo.Guest.Netfront;
using XenIo.Hypervisor.Abi;
using XenIo.Net.Frames;
using Xunit;

namespace XenIo.Guest.Tests.Netfront;

/// <summary>Reassembly of rx responses, honest and hostile, and the virtio header a packet gets on the TAP.</summary>
public sealed class RxAssemblerTests
{
    private const int Ring = 256;

    private static NetifRxResponse Data(uint index, short status, NetRxFlags flags = NetRxFlags.None, ushort offset = 0) =>
        new() { Id = (ushort)(index % Ring), Offset = offset, Flags = flags, Status = status };

    private static NetifRxResponse Extra(NetifGsoType type, ushort size, NetifExtraFlags flags = NetifExtraFlags.None) =>
        RxAssembler.AsResponse(new NetifExtraInfo { Type = NetifExtraType.Gso, Flags = flags, GsoType = type, GsoSize = size });

    [Fact]
    public void A_single_slot_packet_is_ready_at_once()
    {
        var a = new RxAssembler(Ring);
        Assert.Equal(RxStep.Packet, a.Add(7, Data(7, 60, NetRxFlags.DataValidated)));
        Assert.Equal(60, a.Length);
        Assert.Equal([new RxSegment(7, 0, 60)], a.Segments.ToArray());
        Assert.Equal(NetRxFlags.DataValidated, a.Flags);
        Assert.Equal(NetifGsoType.None, a.Gso);
    }

    [Fact]
    public void A_gso_packet_over_16_slots_wraps_the_ring_and_keeps_its_extra()
    {
        var a = new RxAssembler(Ring);
        uint index = 250; // wraps past 255
        Assert.Equal(RxStep.More, a.Add(index, Data(index, 4096, NetRxFlags.CsumBlank | NetRxFlags.DataValidated | NetRxFlags.ExtraInfo | NetRxFlags.MoreData)));
        index++;
        Assert.Equal(RxStep.More, a.Add(index, Extra(NetifGsoType.TcpV4, 1448)));
        for (var i = 0; i < 14; i++)
        {
            index++;
            Assert.Equal(RxStep.More, a.Add(index, Data(index, 4096, NetRxFlags.MoreData)));
        }
        index++;
        Assert.Equal(RxStep.Packet, a.Add(index, Data(index, 4095)));
        Assert.Equal(65535, a.Length);
        Assert.Equal(16, a.SegmentCount);
        Assert.Equal(NetifGsoType.TcpV4, a.Gso);
        Assert.Equal(1448, a.GsoSize);
        Assert.Equal(250u, a.Segments[0].Index);
        Assert.Equal(252u, a.Segments[1].Index);
        // The next packet starts clean.
        Assert.Equal(RxStep.Packet, a.Add(index + 1, Data(index + 1, 100)));
        Assert.Equal(NetifGsoType.None, a.Gso);
        Assert.Equal(100, a.Length);
    }

    public static TheoryData<string, NetifRxResponse[], RxDropReason> Hostile => new()
    {
        { "id of another slot", [new NetifRxResponse { Id = 9, Status = 60 }], RxDropReason.UnexpectedId },
        { "negative status", [Data(0, NetifStatus.Error)], RxDropReason.ErrorStatus },
        { "beyond the page", [Data(0, 200, offset: 4000)], RxDropReason.BeyondPage },
        { "shorter than ethernet", [Data(0, 13)], RxDropReason.BadLength },
        { "zero length", [Data(0, 0)], RxDropReason.BadLength },
        { "gso prefix", [Data(0, 100, NetRxFlags.GsoPrefix)], RxDropReason.BadExtra },
        { "gso of unknown type", [Data(0, 100, NetRxFlags.ExtraInfo), Extra((NetifGsoType)7, 1448)], RxDropReason.BadExtra },
        { "gso of size 0", [Data(0, 100, NetRxFlags.ExtraInfo), Extra(NetifGsoType.TcpV6, 0)], RxDropReason.BadExtra },
        { "extra of no type", [Data(0, 100, NetRxFlags.ExtraInfo), RxAssembler.AsResponse(new NetifExtraInfo { Type = (NetifExtraType)9 })], RxDropReason.BadExtra },
        { "error in a later slot", [Data(0, 4096, NetRxFlags.MoreData), Data(1, NetifStatus.Dropped)], RxDropReason.ErrorStatus },
    };

    [Theory]
    [MemberData(nameof(Hostile))]
    public void Hostile_responses_drop_their_packet_and_the_next_one_still_arrives(string what, NetifRxResponse[] responses, RxDropReason reason)
    {
        var a = new RxAssembler(Ring);
        uint index = 0;
        var last = RxStep.More;
        foreach (var r in responses) last = a.Add(index++, r);
        Assert.True(last == RxStep.Dropped, what);
        Assert.Equal(reason, a.Reason);
        Assert.Equal(RxStep.Packet, a.Add(index, Data(index, 64)));
        Assert.Equal(RxDropReason.None, a.Reason);
    }

    [Fact]
    public void Too_many_slots_or_extras_are_followed_to_the_end_then_dropped()
    {
        var a = new RxAssembler(Ring);
        uint index = 0;
        for (var i = 0; i < 40; i++, index++) Assert.Equal(RxStep.More, a.Add(index, Data(index, 100, NetRxFlags.MoreData)));
        Assert.Equal(RxStep.Dropped, a.Add(index, Data(index, 100)));
        Assert.Equal(RxDropReason.TooManySlots, a.Reason);
        index++;

        Assert.Equal(RxStep.More, a.Add(index++, Data(index - 1, 100, NetRxFlags.ExtraInfo)));
        for (var i = 0; i < 10; i++) Assert.Equal(RxStep.More, a.Add(index++, Extra(NetifGsoType.TcpV4, 1000, NetifExtraFlags.More)));
        Assert.Equal(RxStep.Dropped, a.Add(index++, Extra(NetifGsoType.TcpV4, 1000)));
        Assert.Equal(RxDropReason.TooManySlots, a.Reason);
    }

    [Fact]
    public void Random_responses_never_throw_and_never_describe_bytes_outside_a_page()
    {
        var random = new Random(7);
        var a = new RxAssembler(Ring);
        var bytes = new byte[8];
        for (uint index = 0; index < 200_000; index++)
        {
            random.NextBytes(bytes);
            var response = System.Runtime.InteropServices.MemoryMarshal.Read<NetifRxResponse>(bytes);
            if (a.Add(index, response) != RxStep.Packet) continue;
            Assert.InRange(a.Length, 14, 65535);
            foreach (var s in a.Segments) Assert.InRange(s.Offset + s.Length, 1, 4096);
        }
    }

    private static byte[] TcpFrame(bool v6)
    {
        var frame = new byte[v6 ? 14 + 40 + 32 : 14 + 20 + 32];
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(12), v6 ? EtherTypes.IPv6 : EtherTypes.IPv4);
        if (v6)
        {
            frame[14] = 0x60;
            frame[14 + 6] = EtherTypes.Tcp;
            frame[14 + 40 + 12] = 8 << 4;
        }
        else
        {
            frame[14] = 0x45;
            frame[14 + 9] = EtherTypes.Tcp;
            frame[14 + 20 + 12] = 8 << 4;
        }
        return frame;
    }

    [Fact]
    public void Rx_flags_become_the_virtio_header_the_tap_expects()
    {
        Assert.True(RxAssembler.TryToVirtio(NetRxFlags.DataValidated, NetifGsoType.None, 0, TcpFrame(false), out var h));
        Assert.Equal(VirtioNetHeader.FlagDataValid, h.Flags);

        Assert.True(RxAssembler.TryToVirtio(NetRxFlags.CsumBlank | NetRxFlags.DataValidated, NetifGsoType.TcpV4, 1448, TcpFrame(false), out h));
        Assert.Equal(VirtioNetHeader.FlagNeedsCsum, h.Flags);
        Assert.Equal(34, h.CsumStart);
        Assert.Equal(16, h.CsumOffset);
        Assert.Equal(VirtioNetHeader.GsoTcpV4, h.GsoType);
        Assert.Equal(1448, h.GsoSize);
        Assert.Equal(14 + 20 + 32, h.HdrLen);

        Assert.True(RxAssembler.TryToVirtio(NetRxFlags.CsumBlank, NetifGsoType.TcpV6, 1428, TcpFrame(true), out h));
        Assert.Equal(VirtioNetHeader.GsoTcpV6, h.GsoType);
        Assert.Equal(54, h.CsumStart);

        // GSO that does not match the headers, or a partial checksum on something that is not TCP or UDP.
        Assert.False(RxAssembler.TryToVirtio(NetRxFlags.CsumBlank, NetifGsoType.TcpV6, 1428, TcpFrame(false), out _));
        var arp = new byte[60];
        BinaryPrimitives.WriteUInt16BigEndian(arp.AsSpan(12), EtherTypes.Arp);
        Assert.False(RxAssembler.TryToVirtio(NetRxFlags.CsumBlank, NetifGsoType.None, 0, arp, out _));
        Assert.True(RxAssembler.TryToVirtio(NetRxFlags.None, NetifGsoType.None, 0, arp, out h));
        Assert.Equal(0, h.Flags);
    }
}
