using System.Runtime.CompilerServices;
using XenIo.Hypervisor.Abi;
using XenIo.Net.Frames;

namespace XenIo.Guest.Netfront;

/// <summary>Why a frame read from the TAP was not put on the TX ring.</summary>
public enum TxVerdict
{
    Ok,
    /// <summary>Shorter than an Ethernet header.</summary>
    TooShort,
    /// <summary>Longer than a tx request's 16-bit size can describe (or than one page without feature-sg).</summary>
    TooLong,
    /// <summary>Flags or a GSO type netif cannot express (UDP GSO, ECN, unknown flags), or GSO the backend did not offer.</summary>
    Unsupported,
}

/// <summary>What the backend accepts, from its <c>feature-*</c> keys.</summary>
public readonly record struct TxFeatures(bool ScatterGather, bool GsoTcpV4, bool GsoTcpV6)
{
    public static TxFeatures All => new(true, true, true);
}

/// <summary>
/// Turns one frame, already in pages granted to the backend, into netif tx slots (io/netif.h): the
/// first request carries the whole packet size and the checksum flags, a GSO extra info follows it
/// when the virtio-net header asks for segmentation, then one request per further page, each but the
/// last flagged more_data (what Linux's <c>xennet_start_xmit</c> builds). Pure: no I/O, no allocation.
/// </summary>
public static class TxPacket
{
    public const int PageSize = 4096;

    /// <summary>Pages (and data slots) a frame of <paramref name="length"/> bytes fills from offset 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int PagesFor(int length) => (length + PageSize - 1) / PageSize;

    /// <summary>Most pages one frame can fill (65535 bytes).</summary>
    public const int MaxPages = (NetifLimits.MaxPacketSize + PageSize - 1) / PageSize;

    /// <summary>Most ring slots one frame takes: its pages and one GSO extra.</summary>
    public const int MaxSlots = MaxPages + 1;

    /// <summary>
    /// Writes the slots for a frame of <paramref name="length"/> bytes whose i-th page is granted as
    /// <paramref name="grefs"/>[i] and tracked as request id <paramref name="ids"/>[i]. Returns the
    /// verdict and, when <see cref="TxVerdict.Ok"/>, the number of slots written.
    /// </summary>
    public static TxVerdict Build(in VirtioNetHeader vnet, int length, TxFeatures features,
        ReadOnlySpan<ushort> ids, ReadOnlySpan<uint> grefs, Span<NetifTxRequest> slots, out int count)
    {
        count = 0;
        if (length < EtherTypes.EthernetHeaderLength) return TxVerdict.TooShort;
        if (length > NetifLimits.MaxPacketSize || (!features.ScatterGather && length > PageSize)) return TxVerdict.TooLong;
        var pages = PagesFor(length);
        if (ids.Length < pages || grefs.Length < pages) throw new ArgumentException("one id and gref per page");

        var flags = NetTxFlags.None;
        if ((vnet.Flags & ~(VirtioNetHeader.FlagNeedsCsum | VirtioNetHeader.FlagDataValid)) != 0) return TxVerdict.Unsupported;
        // A partial checksum is also "validated": the backend fills it in (xennet_start_xmit does the same).
        if ((vnet.Flags & VirtioNetHeader.FlagNeedsCsum) != 0) flags |= NetTxFlags.CsumBlank | NetTxFlags.DataValidated;
        else if ((vnet.Flags & VirtioNetHeader.FlagDataValid) != 0) flags |= NetTxFlags.DataValidated;

        var gso = NetifGsoType.None;
        switch (vnet.GsoType)
        {
            case VirtioNetHeader.GsoNone:
                break;
            case VirtioNetHeader.GsoTcpV4 when features.GsoTcpV4:
                gso = NetifGsoType.TcpV4;
                break;
            case VirtioNetHeader.GsoTcpV6 when features.GsoTcpV6:
                gso = NetifGsoType.TcpV6;
                break;
            default:
                return TxVerdict.Unsupported;
        }
        if (gso != NetifGsoType.None && (vnet.GsoSize == 0 || (vnet.Flags & VirtioNetHeader.FlagNeedsCsum) == 0)) return TxVerdict.Unsupported;
        var need = pages + (gso != NetifGsoType.None ? 1 : 0);
        if (slots.Length < need) throw new ArgumentException("room for every slot of the packet", nameof(slots));

        if (pages > 1) flags |= NetTxFlags.MoreData;
        if (gso != NetifGsoType.None) flags |= NetTxFlags.ExtraInfo;
        slots[count++] = new NetifTxRequest { Gref = grefs[0], Offset = 0, Flags = flags, Id = ids[0], Size = (ushort)length };
        if (gso != NetifGsoType.None)
        {
            var extra = new NetifExtraInfo { Type = NetifExtraType.Gso, Flags = NetifExtraFlags.None, GsoSize = vnet.GsoSize, GsoType = gso };
            slots[count++] = AsTxSlot(extra);
        }
        var remaining = length - PageSize;
        for (var page = 1; page < pages; page++, remaining -= PageSize)
        {
            var size = Math.Min(remaining, PageSize);
            slots[count++] = new NetifTxRequest
            {
                Gref = grefs[page],
                Offset = 0,
                Flags = page + 1 < pages ? NetTxFlags.MoreData : NetTxFlags.None,
                Id = ids[page],
                Size = (ushort)size,
            };
        }
        return TxVerdict.Ok;
    }

    /// <summary>An extra info segment in a tx slot: its 8 bytes, then zeros (the slot is 12).</summary>
    public static NetifTxRequest AsTxSlot(in NetifExtraInfo extra)
    {
        var slot = default(NetifTxRequest);
        Unsafe.WriteUnaligned(ref Unsafe.As<NetifTxRequest, byte>(ref slot), extra);
        return slot;
    }

    /// <summary>The extra info in a slot (tests and the test backend read it back).</summary>
    public static NetifExtraInfo AsExtra(in NetifTxRequest slot) =>
        Unsafe.ReadUnaligned<NetifExtraInfo>(ref Unsafe.As<NetifTxRequest, byte>(ref Unsafe.AsRef(in slot)));
}
