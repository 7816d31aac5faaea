using XenIo.Guest.Netfront;
using XenIo.Hypervisor.Abi;
using XenIo.Net.Frames;
using Xunit;

namespace XenIo.Guest.Tests.Netfront;

/// <summary>Slots built from frames of every size class, with and without GSO and checksum offload.</summary>
public sealed class TxPacketTests
{
    private static readonly ushort[] Ids = Enumerable.Range(100, TxPacket.MaxPages).Select(i => (ushort)i).ToArray();
    private static readonly uint[] Grefs = Enumerable.Range(5000, TxPacket.MaxPages).Select(i => (uint)i).ToArray();

    private static (TxVerdict Verdict, NetifTxRequest[] Slots) Build(int length, VirtioNetHeader vnet, TxFeatures? features = null)
    {
        var slots = new NetifTxRequest[TxPacket.MaxSlots];
        var verdict = TxPacket.Build(vnet, length, features ?? TxFeatures.All, Ids, Grefs, slots, out var count);
        return (verdict, slots[..count]);
    }

    private static VirtioNetHeader Gso(byte type, ushort size) => new()
    {
        Flags = VirtioNetHeader.FlagNeedsCsum,
        GsoType = type,
        GsoSize = size,
        HdrLen = 66,
        CsumStart = 34,
        CsumOffset = 16,
    };

    [Theory]
    [InlineData(14)]
    [InlineData(60)]
    [InlineData(1514)]
    [InlineData(4095)]
    [InlineData(4096)]
    [InlineData(4097)]
    [InlineData(9014)]
    [InlineData(32768)]
    [InlineData(65535)]
    public void Plain_frames_fill_whole_pages_and_chain_them_with_more_data(int length)
    {
        var (verdict, slots) = Build(length, default);
        Assert.Equal(TxVerdict.Ok, verdict);
        var pages = (length + 4095) / 4096;
        Assert.Equal(pages, slots.Length);
        // The first slot's size is the whole packet; the others carry their own bytes.
        Assert.Equal(length, slots[0].Size);
        // The first page is filled first; the last one holds the rest.
        Assert.Equal(Math.Min(length, 4096), slots[0].Size - slots.Skip(1).Sum(s => (int)s.Size));
        if (pages > 1) Assert.Equal(length - 4096 * (pages - 1), (int)slots[^1].Size);
        for (var i = 0; i < pages; i++)
        {
            Assert.Equal(Ids[i], slots[i].Id);
            Assert.Equal(Grefs[i], slots[i].Gref);
            Assert.Equal(0, slots[i].Offset);
            Assert.Equal(i + 1 < pages, (slots[i].Flags & NetTxFlags.MoreData) != 0);
            Assert.Equal(0, (int)(slots[i].Flags & (NetTxFlags.ExtraInfo | NetTxFlags.CsumBlank | NetTxFlags.DataValidated)));
        }
        Assert.All(slots.Skip(1), s => Assert.InRange(s.Size, 1, 4096));
    }

    [Theory]
    [InlineData(VirtioNetHeader.GsoTcpV4, NetifGsoType.TcpV4, 1448, 65535)]
    [InlineData(VirtioNetHeader.GsoTcpV6, NetifGsoType.TcpV6, 1428, 20000)]
    [InlineData(VirtioNetHeader.GsoTcpV4, NetifGsoType.TcpV4, 536, 3000)]
    public void Gso_frames_carry_their_extra_info_right_after_the_first_slot(byte vnetType, NetifGsoType gso, ushort mss, int length)
    {
        var (verdict, slots) = Build(length, Gso(vnetType, mss));
        Assert.Equal(TxVerdict.Ok, verdict);
        var pages = (length + 4095) / 4096;
        Assert.Equal(pages + 1, slots.Length);
        Assert.True((slots[0].Flags & NetTxFlags.ExtraInfo) != 0);
        Assert.Equal(NetTxFlags.CsumBlank | NetTxFlags.DataValidated, slots[0].Flags & (NetTxFlags.CsumBlank | NetTxFlags.DataValidated));
        var extra = TxPacket.AsExtra(slots[1]);
        Assert.Equal(NetifExtraType.Gso, extra.Type);
        Assert.Equal(NetifExtraFlags.None, extra.Flags);
        Assert.Equal(gso, extra.GsoType);
        Assert.Equal(mss, extra.GsoSize);
        Assert.Equal(0, extra.GsoFeatures);
        // Data slots resume after the extra, ids in page order.
        Assert.Equal(Ids.Take(pages), new[] { slots[0].Id }.Concat(slots.Skip(2).Select(s => s.Id)));
        Assert.Equal(pages > 1, (slots[0].Flags & NetTxFlags.MoreData) != 0);
        Assert.Equal(length, slots[0].Size);
    }

    [Fact]
    public void Checksum_flags_follow_the_virtio_header()
    {
        Assert.Equal(NetTxFlags.CsumBlank | NetTxFlags.DataValidated,
            Build(100, new VirtioNetHeader { Flags = VirtioNetHeader.FlagNeedsCsum, CsumStart = 34, CsumOffset = 6 }).Slots[0].Flags);
        Assert.Equal(NetTxFlags.DataValidated, Build(100, new VirtioNetHeader { Flags = VirtioNetHeader.FlagDataValid }).Slots[0].Flags);
    }

    [Fact]
    public void Frames_netif_cannot_describe_are_refused()
    {
        Assert.Equal(TxVerdict.TooShort, Build(13, default).Verdict);
        Assert.Equal(TxVerdict.TooShort, Build(0, default).Verdict);
        Assert.Equal(TxVerdict.TooLong, Build(65536, default).Verdict);
        // No scatter-gather: one page per packet.
        Assert.Equal(TxVerdict.TooLong, Build(4097, default, new TxFeatures(false, false, false)).Verdict);
        Assert.Equal(TxVerdict.Ok, Build(4096, default, new TxFeatures(false, false, false)).Verdict);
        // UDP GSO and ECN have no netif type; GSO the backend did not offer; GSO without a partial checksum or a size.
        Assert.Equal(TxVerdict.Unsupported, Build(9000, Gso(VirtioNetHeader.GsoUdp, 1400)).Verdict);
        Assert.Equal(TxVerdict.Unsupported, Build(9000, Gso(VirtioNetHeader.GsoTcpV4 | VirtioNetHeader.GsoEcn, 1400)).Verdict);
        Assert.Equal(TxVerdict.Unsupported, Build(9000, Gso(VirtioNetHeader.GsoTcpV6, 1400), new TxFeatures(true, true, false)).Verdict);
        Assert.Equal(TxVerdict.Unsupported, Build(9000, Gso(VirtioNetHeader.GsoTcpV4, 0)).Verdict);
        Assert.Equal(TxVerdict.Unsupported, Build(9000, Gso(VirtioNetHeader.GsoTcpV4, 1400) with { Flags = 0 }).Verdict);
        Assert.Equal(TxVerdict.Unsupported, Build(100, new VirtioNetHeader { Flags = 0x80 }).Verdict);
    }

    [Fact]
    public void Every_size_from_14_to_65535_fits_the_slots_netback_must_accept()
    {
        var slots = new NetifTxRequest[TxPacket.MaxSlots];
        for (var length = 14; length <= 65535; length += 7)
        {
            Assert.Equal(TxVerdict.Ok, TxPacket.Build(Gso(VirtioNetHeader.GsoTcpV4, 1448), length, TxFeatures.All, Ids, Grefs, slots, out var count));
            Assert.InRange(count, 2, NetifLimits.MinSlotsPerPacket);
            var data = slots[0].Size - Enumerable.Range(2, count - 2).Sum(i => (int)slots[i].Size);
            Assert.InRange(data, 1, 4096);
        }
    }
}
