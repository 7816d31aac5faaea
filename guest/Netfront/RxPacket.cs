using System.Runtime.CompilerServices;
using XenIo.Hypervisor.Abi;
using XenIo.Net.Frames;

namespace XenIo.Guest.Netfront;

/// <summary>One piece of a received packet: <see cref="Length"/> bytes at <see cref="Offset"/> of the page posted in ring slot <see cref="Index"/>.</summary>
public readonly record struct RxSegment(uint Index, ushort Offset, ushort Length);

public enum RxStep
{
    /// <summary>The packet goes on in the next response.</summary>
    More,
    /// <summary>A whole, valid packet is ready (<see cref="RxAssembler.Segments"/>, flags, GSO).</summary>
    Packet,
    /// <summary>The packet's slots are consumed and it is dropped (<see cref="RxAssembler.Reason"/>).</summary>
    Dropped,
}

public enum RxDropReason
{
    None,
    /// <summary>A response whose id is not the one we posted in its slot.</summary>
    UnexpectedId,
    /// <summary>A negative status (the backend's error) on a data slot.</summary>
    ErrorStatus,
    /// <summary>offset + length beyond the page.</summary>
    BeyondPage,
    /// <summary>More data slots than <see cref="RxAssembler.MaxDataSlots"/>, or more extras than the protocol has types.</summary>
    TooManySlots,
    /// <summary>More than 65535 bytes, or less than an Ethernet header.</summary>
    BadLength,
    /// <summary>A GSO extra with an unknown type or a zero size, an extra of no known type, or the old gso_prefix format we never asked for.</summary>
    BadExtra,
}

/// <summary>
/// Reassembles received packets from netif rx responses as Linux's <c>xennet_get_responses</c> does:
/// the first response, its extra info segments (GSO) when flagged extra_info, then data responses
/// while more_data is set. Every field comes from the backend and is checked (id against the slot,
/// status, offset and length within the page, slots per packet, total length); a bad packet's slots
/// are still followed to its end so the ring stays in step, then the packet is dropped. Pure: feed it
/// copies of responses in ring order; it allocates nothing per packet.
/// </summary>
public sealed class RxAssembler(int ringSize)
{
    /// <summary>Data slots one packet may use: <c>XEN_NETIF_NR_SLOTS_MIN</c> plus one for a small head (as netfront allows).</summary>
    public const int MaxDataSlots = NetifLimits.MinSlotsPerPacket + 1;

    /// <summary>Extra info segments of one packet: at most one per type.</summary>
    public const int MaxExtras = 4;

    private readonly uint _mask = (uint)ringSize - 1;
    private readonly RxSegment[] _segments = new RxSegment[MaxDataSlots];
    private Phase _phase;
    private bool _moreAfterExtras;
    private int _dataSlots;
    private int _extras;

    private enum Phase { First, Extras, Data }

    public int SegmentCount { get; private set; }

    public ReadOnlySpan<RxSegment> Segments => _segments.AsSpan(0, SegmentCount);

    /// <summary>Bytes of the packet.</summary>
    public int Length { get; private set; }

    /// <summary>The first response's flags (checksum state).</summary>
    public NetRxFlags Flags { get; private set; }

    public NetifGsoType Gso { get; private set; }

    public ushort GsoSize { get; private set; }

    public RxDropReason Reason { get; private set; }

    /// <summary>Slots the current packet has taken so far (data and extras).</summary>
    public int Slots { get; private set; }

    /// <summary>Takes the response found at ring index <paramref name="index"/>.</summary>
    public RxStep Add(uint index, in NetifRxResponse response)
    {
        if (_phase == Phase.First) Reset(response.Flags);
        Slots++;
        if (_phase == Phase.Extras) return AddExtra(AsExtra(response));

        _dataSlots++;
        if (response.Id != (ushort)(index & _mask)) Fail(RxDropReason.UnexpectedId);
        else if (response.Status < 0) Fail(RxDropReason.ErrorStatus);
        else if (response.Offset + response.Status > TxPacket.PageSize) Fail(RxDropReason.BeyondPage);
        else if (_dataSlots > MaxDataSlots) Fail(RxDropReason.TooManySlots);
        else if (response.Status > 0)
        {
            _segments[SegmentCount++] = new RxSegment(index, response.Offset, (ushort)response.Status);
            Length += response.Status;
            if (Length > NetifLimits.MaxPacketSize) Fail(RxDropReason.BadLength);
        }

        var more = (response.Flags & NetRxFlags.MoreData) != 0;
        if (_phase == Phase.First)
        {
            if ((response.Flags & NetRxFlags.GsoPrefix) != 0) Fail(RxDropReason.BadExtra);
            if ((response.Flags & NetRxFlags.ExtraInfo) != 0)
            {
                _phase = Phase.Extras;
                _moreAfterExtras = more;
                return RxStep.More;
            }
        }
        if (more)
        {
            _phase = Phase.Data;
            return RxStep.More;
        }
        return Finish();
    }

    private RxStep AddExtra(in NetifExtraInfo extra)
    {
        if (++_extras > MaxExtras) Fail(RxDropReason.TooManySlots);
        switch (extra.Type)
        {
            case NetifExtraType.Gso:
                if (extra.GsoType is not (NetifGsoType.TcpV4 or NetifGsoType.TcpV6) || extra.GsoSize == 0) Fail(RxDropReason.BadExtra);
                else
                {
                    Gso = extra.GsoType;
                    GsoSize = extra.GsoSize;
                }
                break;
            case NetifExtraType.McastAdd or NetifExtraType.McastDel or NetifExtraType.Hash:
                break;
            default:
                Fail(RxDropReason.BadExtra);
                break;
        }
        if ((extra.Flags & NetifExtraFlags.More) != 0) return RxStep.More;
        if (_moreAfterExtras)
        {
            _phase = Phase.Data;
            return RxStep.More;
        }
        return Finish();
    }

    private RxStep Finish()
    {
        _phase = Phase.First;
        if (Reason == RxDropReason.None && Length < EtherTypes.EthernetHeaderLength) Reason = RxDropReason.BadLength;
        return Reason == RxDropReason.None ? RxStep.Packet : RxStep.Dropped;
    }

    private void Fail(RxDropReason reason)
    {
        if (Reason == RxDropReason.None) Reason = reason;
    }

    private void Reset(NetRxFlags flags)
    {
        SegmentCount = 0;
        Length = 0;
        Flags = flags;
        Gso = NetifGsoType.None;
        GsoSize = 0;
        Reason = RxDropReason.None;
        Slots = 0;
        _dataSlots = 0;
        _extras = 0;
        _moreAfterExtras = false;
    }

    /// <summary>An extra info segment sits in an rx response slot: the same 8 bytes read as <c>netif_extra_info</c>.</summary>
    public static NetifExtraInfo AsExtra(in NetifRxResponse slot) =>
        Unsafe.As<NetifRxResponse, NetifExtraInfo>(ref Unsafe.AsRef(in slot));

    public static NetifRxResponse AsResponse(in NetifExtraInfo extra) =>
        Unsafe.As<NetifExtraInfo, NetifRxResponse>(ref Unsafe.AsRef(in extra));

    /// <summary>
    /// The virtio-net header for a received packet: csum_blank becomes NEEDS_CSUM with the transport
    /// checksum's position found in the packet's first bytes (<paramref name="head"/>; netif carries no
    /// csum_start), data_validated becomes DATA_VALID, and GSO becomes the TAP's gso type, size and
    /// header length. False when the headers do not support what the flags claim (the packet is dropped).
    /// </summary>
    public static bool TryToVirtio(NetRxFlags flags, NetifGsoType gso, ushort gsoSize, ReadOnlySpan<byte> head, out VirtioNetHeader header)
    {
        header = default;
        var partial = (flags & NetRxFlags.CsumBlank) != 0 || gso != NetifGsoType.None;
        if (!partial)
        {
            if ((flags & NetRxFlags.DataValidated) != 0) header.Flags = VirtioNetHeader.FlagDataValid;
            return true;
        }
        if (!FrameLayout.TryParse(head, out var layout) || layout.L4Offset < 0) return false;
        header.Flags = VirtioNetHeader.FlagNeedsCsum;
        header.CsumStart = (ushort)layout.L4Offset;
        header.CsumOffset = layout.L4Protocol == EtherTypes.Tcp ? (ushort)16 : (ushort)6;
        if (gso == NetifGsoType.None) return true;
        if (layout.L4Protocol != EtherTypes.Tcp || (gso == NetifGsoType.TcpV4) != layout.IsIPv4 || (gso == NetifGsoType.TcpV6) != layout.IsIPv6)
            return false;
        var tcpHeader = (head[layout.L4Offset + 12] >> 4) * 4;
        if (tcpHeader < 20) return false;
        header.GsoType = gso == NetifGsoType.TcpV4 ? VirtioNetHeader.GsoTcpV4 : VirtioNetHeader.GsoTcpV6;
        header.GsoSize = gsoSize;
        header.HdrLen = (ushort)(layout.L4Offset + tcpHeader);
        return true;
    }
}
