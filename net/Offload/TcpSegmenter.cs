using System.Buffers.Binary;
using XenIo.Net.Frames;

namespace XenIo.Net.Offload;

/// <summary>Receives the segments a <see cref="TcpSegmenter"/> cuts; each span is valid only during the call.</summary>
public interface ISegmentSink
{
    void OnSegment(ReadOnlySpan<byte> segment);
}

/// <summary>Why a GSO frame could not be segmented; the caller drops it and counts the reason.</summary>
public enum SegmentResult
{
    Ok = 0,
    NotTcp,
    Malformed,
    ScratchTooSmall,
}

/// <summary>
/// Software TCP segmentation offload (what Linux's tcp_gso_segment does) for ports that cannot take a
/// 64 KiB GSO frame: cuts the payload into <c>GsoSize</c> pieces, each with a copy of the headers,
/// IPv4 total length / ID / header checksum or IPv6 payload length, TCP sequence number and flags fixed
/// up (FIN and PSH only on the last segment, CWR only on the first), and a complete TCP checksum.
/// </summary>
public static class TcpSegmenter
{
    private const byte TcpFin = 0x01;
    private const byte TcpPsh = 0x08;
    private const byte TcpCwr = 0x80;

    /// <summary>
    /// The smallest segment size cut: Linux's <c>tcp_min_snd_mss</c> default. No TCP stack sends less,
    /// and a guest's 64 KiB frame marked with a segment size of 1 would otherwise cost the switch 65,535
    /// segments of 55 bytes (the amplification Linux closed after CVE-2019-11477).
    /// </summary>
    public const int MinGsoSize = 48;

    /// <summary>
    /// Segments <paramref name="frame"/> into <paramref name="scratch"/> one segment at a time and hands
    /// each to <paramref name="sink"/>. The frame is only read. Returns the number of segments through
    /// <paramref name="segments"/>.
    /// </summary>
    public static SegmentResult Segment<TSink>(ReadOnlySpan<byte> frame, in FrameMetadata metadata, Span<byte> scratch, TSink sink, out int segments)
        where TSink : ISegmentSink
    {
        segments = 0;
        if (!FrameLayout.TryParse(frame, out var layout)) return SegmentResult.Malformed;
        if (layout.L4Protocol != EtherTypes.Tcp) return SegmentResult.NotTcp;
        if (metadata.Gso == GsoType.TcpV4 && !layout.IsIPv4) return SegmentResult.Malformed;
        if (metadata.Gso == GsoType.TcpV6 && !layout.IsIPv6) return SegmentResult.Malformed;
        if (!TransportChecksum.TryTransportLength(frame, layout, out var l4Length)) return SegmentResult.Malformed;
        var tcpHeaderLength = (frame[layout.L4Offset + 12] >> 4) * 4;
        if (tcpHeaderLength < 20 || tcpHeaderLength > l4Length) return SegmentResult.Malformed;
        var headerLength = layout.L4Offset + tcpHeaderLength;
        var payloadLength = l4Length - tcpHeaderLength;
        var mss = metadata.GsoSize;
        if (mss < MinGsoSize) return SegmentResult.Malformed;
        var needed = headerLength + Math.Min(mss, payloadLength);
        if (scratch.Length < needed) return SegmentResult.ScratchTooSmall;

        var headers = frame[..headerLength];
        var payload = frame.Slice(headerLength, payloadLength);
        var sequence = BinaryPrimitives.ReadUInt32BigEndian(frame[(layout.L4Offset + 4)..]);
        var flags = frame[layout.L4Offset + 13];
        var ipId = layout.IsIPv4 ? BinaryPrimitives.ReadUInt16BigEndian(frame[(layout.L3Offset + 4)..]) : (ushort)0;
        var offset = 0;
        do
        {
            var chunk = Math.Min(mss, payloadLength - offset);
            var segment = scratch[..(headerLength + chunk)];
            headers.CopyTo(segment);
            payload.Slice(offset, chunk).CopyTo(segment[headerLength..]);
            var last = offset + chunk >= payloadLength;
            if (layout.IsIPv4)
            {
                BinaryPrimitives.WriteUInt16BigEndian(segment[(layout.L3Offset + 2)..], (ushort)(segment.Length - layout.L3Offset));
                BinaryPrimitives.WriteUInt16BigEndian(segment[(layout.L3Offset + 4)..], (ushort)(ipId + segments));
                TransportChecksum.WriteIPv4HeaderChecksum(segment, layout.L3Offset);
            }
            else
            {
                BinaryPrimitives.WriteUInt16BigEndian(segment[(layout.L3Offset + 4)..], (ushort)(segment.Length - layout.L3Offset - 40));
            }
            BinaryPrimitives.WriteUInt32BigEndian(segment[(layout.L4Offset + 4)..], sequence + (uint)offset);
            var segmentFlags = flags;
            if (!last) segmentFlags &= unchecked((byte)~(TcpFin | TcpPsh));
            if (segments > 0) segmentFlags &= unchecked((byte)~TcpCwr);
            segment[layout.L4Offset + 13] = segmentFlags;
            TransportChecksum.WriteTransportChecksum(segment, layout);
            sink.OnSegment(segment);
            segments++;
            offset += chunk;
        }
        while (offset < payloadLength);
        return SegmentResult.Ok;
    }
}
