using XenIo.Hypervisor.Abi;
using XenIo.Net.Frames;
using XenIo.Net.Offload;

namespace XenIo.Netback.Vif;

/// <summary>
/// Translates netif's offload flags and GSO extra info to and from the switch's <see cref="FrameMetadata"/>
/// (Linux netback's <c>checksum_setup</c> and <c>xenvif_set_skb_gso</c>, and the RX side of
/// <c>xenvif_rx_action</c>). Pure functions over the frame bytes.
/// </summary>
public static class VifOffload
{
    /// <summary>
    /// csum_blank (or GSO) → partial checksum with start and offset found from the headers;
    /// data_validated → validated; GSO extra → GSO type, size and header length. False when the
    /// headers do not allow what the flags claim, or the GSO size is below
    /// <see cref="TcpSegmenter.MinGsoSize"/> (the packet is dropped, not the vif).
    /// </summary>
    public static bool TrySetup(ReadOnlySpan<byte> frame, NetTxFlags flags, bool hasGso, in NetifExtraInfo gso, ref FrameMetadata metadata)
    {
        if ((flags & NetTxFlags.CsumBlank) == 0 && !hasGso)
        {
            if ((flags & NetTxFlags.DataValidated) != 0) metadata.Checksum = ChecksumState.Validated;
            return true;
        }
        if (!FrameLayout.TryParse(frame, out var layout) || layout.L4Offset < 0) return false;
        var tcp = layout.L4Protocol == EtherTypes.Tcp;
        var csumOffset = tcp ? 16 : 6;
        if (layout.L4Offset + csumOffset + 2 > frame.Length) return false;
        metadata.Checksum = ChecksumState.Partial;
        metadata.CsumStart = (ushort)layout.L4Offset;
        metadata.CsumOffset = (ushort)csumOffset;
        if (!hasGso) return true;
        if (!tcp) return false;
        // The switch's own floor: a port that takes GSO frames as they are would otherwise be handed a
        // segment size no TCP stack sends (1 turns 64 KiB into 65,535 segments for whoever cuts it).
        if (gso.GsoSize < TcpSegmenter.MinGsoSize) return false;
        if (gso.GsoType == NetifGsoType.TcpV4 ? !layout.IsIPv4 : !layout.IsIPv6) return false;
        var tcpHeader = (frame[layout.L4Offset + 12] >> 4) * 4;
        if (tcpHeader < 20 || layout.L4Offset + tcpHeader > frame.Length) return false;
        metadata.Gso = gso.GsoType == NetifGsoType.TcpV4 ? GsoType.TcpV4 : GsoType.TcpV6;
        metadata.GsoSize = gso.GsoSize;
        metadata.HeaderLength = (ushort)(layout.L4Offset + tcpHeader);
        return true;
    }

    /// <summary>The RX flags of a frame's first response (NETRXF_csum_blank|data_validated for partial, data_validated for checked).</summary>
    public static NetRxFlags RxFlags(in FrameMetadata metadata) => metadata.Checksum switch
    {
        ChecksumState.Partial => NetRxFlags.CsumBlank | NetRxFlags.DataValidated,
        ChecksumState.Validated => NetRxFlags.DataValidated,
        _ => NetRxFlags.None,
    };

    /// <summary>The GSO extra info that follows the first RX response of a GSO frame.</summary>
    public static NetifExtraInfo RxGsoExtra(in FrameMetadata metadata) => new()
    {
        Type = NetifExtraType.Gso,
        Flags = NetifExtraFlags.None,
        GsoSize = metadata.GsoSize,
        GsoType = metadata.Gso == GsoType.TcpV6 ? NetifGsoType.TcpV6 : NetifGsoType.TcpV4,
        GsoPad = 0,
        GsoFeatures = 0,
    };
}
