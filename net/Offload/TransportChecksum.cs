using System.Buffers.Binary;
using XenIo.Net.Frames;

namespace XenIo.Net.Offload;

/// <summary>
/// Software checksum offload for ports that cannot take a frame whose checksum is still partial:
/// completes CHECKSUM_PARTIAL frames, and computes IPv4 header and TCP/UDP checksums from scratch.
/// </summary>
public static class TransportChecksum
{
    /// <summary>
    /// Folds the checksum over <c>[csumStart, end)</c> into the field at <c>csumStart + csumOffset</c>,
    /// which holds the pseudo-header sum, as a NIC does for NEEDS_CSUM. False when the window is outside the frame.
    /// </summary>
    public static bool CompletePartial(Span<byte> frame, int csumStart, int csumOffset)
    {
        if (csumStart < 0 || csumOffset < 0 || csumStart + csumOffset + 2 > frame.Length) return false;
        var checksum = InternetChecksum.Compute(frame[csumStart..]);
        BinaryPrimitives.WriteUInt16BigEndian(frame[(csumStart + csumOffset)..], checksum);
        return true;
    }

    /// <summary>Writes the IPv4 header checksum of the header at <paramref name="l3Offset"/>.</summary>
    public static void WriteIPv4HeaderChecksum(Span<byte> frame, int l3Offset)
    {
        var ihl = (frame[l3Offset] & 0x0F) * 4;
        var header = frame.Slice(l3Offset, ihl);
        header[10] = 0;
        header[11] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(header[10..], InternetChecksum.Compute(header));
    }

    /// <summary>
    /// Computes and stores the TCP or UDP checksum of a frame from scratch (pseudo-header included).
    /// The transport length comes from the IP header, so Ethernet padding is left out.
    /// </summary>
    public static bool WriteTransportChecksum(Span<byte> frame, in FrameLayout layout)
    {
        if (!TryTransportLength(frame, layout, out var l4Length)) return false;
        var field = layout.L4Offset + (layout.L4Protocol == EtherTypes.Tcp ? 16 : 6);
        frame[field] = 0;
        frame[field + 1] = 0;
        var sum = PseudoHeaderSum(frame, layout, l4Length);
        sum = InternetChecksum.Add(sum, frame.Slice(layout.L4Offset, l4Length));
        var checksum = (ushort)~InternetChecksum.Fold(sum);
        // RFC 768: a computed UDP checksum of zero is sent as all ones (zero means "none").
        if (checksum == 0 && layout.L4Protocol == EtherTypes.Udp) checksum = 0xFFFF;
        BinaryPrimitives.WriteUInt16BigEndian(frame[field..], checksum);
        return true;
    }

    /// <summary>True when the TCP or UDP checksum of the frame is correct (a UDP checksum of 0 means none).</summary>
    public static bool VerifyTransportChecksum(ReadOnlySpan<byte> frame, in FrameLayout layout)
    {
        if (!TryTransportLength(frame, layout, out var l4Length)) return false;
        if (layout.L4Protocol == EtherTypes.Udp && layout.IsIPv4 &&
            BinaryPrimitives.ReadUInt16BigEndian(frame[(layout.L4Offset + 6)..]) == 0) return true;
        var sum = PseudoHeaderSum(frame, layout, l4Length);
        sum = InternetChecksum.Add(sum, frame.Slice(layout.L4Offset, l4Length));
        return InternetChecksum.Fold(sum) == 0xFFFF;
    }

    /// <summary>
    /// The pseudo-header sum folded but not complemented: what a sender stores in the checksum field
    /// of a CHECKSUM_PARTIAL frame.
    /// </summary>
    public static ushort PartialSeed(ReadOnlySpan<byte> frame, in FrameLayout layout)
    {
        if (!TryTransportLength(frame, layout, out var l4Length)) return 0;
        return InternetChecksum.Fold(PseudoHeaderSum(frame, layout, l4Length));
    }

    public static bool TryTransportLength(ReadOnlySpan<byte> frame, in FrameLayout layout, out int l4Length)
    {
        l4Length = 0;
        if (layout.L4Offset < 0) return false;
        int ipEnd;
        if (layout.IsIPv4)
            ipEnd = layout.L3Offset + BinaryPrimitives.ReadUInt16BigEndian(frame[(layout.L3Offset + 2)..]);
        else if (layout.IsIPv6)
            ipEnd = layout.L3Offset + 40 + BinaryPrimitives.ReadUInt16BigEndian(frame[(layout.L3Offset + 4)..]);
        else
            return false;
        if (ipEnd > frame.Length || ipEnd < layout.L4Offset + (layout.L4Protocol == EtherTypes.Tcp ? 20 : 8)) return false;
        l4Length = ipEnd - layout.L4Offset;
        return true;
    }

    private static ulong PseudoHeaderSum(ReadOnlySpan<byte> frame, in FrameLayout layout, int l4Length)
    {
        ulong sum;
        if (layout.IsIPv4)
            sum = InternetChecksum.Add(0, frame.Slice(layout.L3Offset + 12, 8));
        else
            sum = InternetChecksum.Add(0, frame.Slice(layout.L3Offset + 8, 32));
        sum = InternetChecksum.AddWord(sum, layout.L4Protocol);
        sum = InternetChecksum.AddWord(sum, (ushort)l4Length);
        // IPv6 lengths above 65535 need jumbograms, which the data plane never carries.
        return sum;
    }
}
