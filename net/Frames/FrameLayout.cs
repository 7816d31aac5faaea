using System.Buffers.Binary;

namespace XenIo.Net.Frames;

/// <summary>
/// Where the headers of an Ethernet frame sit, found without allocating: an optional 802.1Q tag, IPv4 or
/// IPv6 (skipping hop-by-hop, routing and destination options), and TCP or UDP. Frames come from
/// guests: every offset is checked against the frame before it is used.
/// </summary>
public readonly struct FrameLayout
{
    public int L3Offset { get; init; }
    public ushort EtherType { get; init; }
    /// <summary>-1 when the frame carries no TCP or UDP the parser understands.</summary>
    public int L4Offset { get; init; }
    public byte L4Protocol { get; init; }
    /// <summary>IPv4 header length, or 40 plus extension headers for IPv6.</summary>
    public int L3HeaderLength => L4Offset - L3Offset;

    public bool IsIPv4 => EtherType == EtherTypes.IPv4;
    public bool IsIPv6 => EtherType == EtherTypes.IPv6;

    public static bool TryParse(ReadOnlySpan<byte> frame, out FrameLayout layout)
    {
        layout = default;
        if (frame.Length < EtherTypes.EthernetHeaderLength) return false;
        var l3 = EtherTypes.EthernetHeaderLength;
        var etherType = BinaryPrimitives.ReadUInt16BigEndian(frame[12..]);
        if (etherType == EtherTypes.Vlan)
        {
            if (frame.Length < l3 + EtherTypes.VlanTagLength) return false;
            etherType = BinaryPrimitives.ReadUInt16BigEndian(frame[16..]);
            l3 += EtherTypes.VlanTagLength;
        }
        int l4 = -1;
        byte proto = 0;
        if (etherType == EtherTypes.IPv4)
        {
            if (frame.Length < l3 + 20) return false;
            if (frame[l3] >> 4 != 4) return false;
            var ihl = (frame[l3] & 0x0F) * 4;
            if (ihl < 20 || frame.Length < l3 + ihl) return false;
            // Fragments other than the first carry no transport header.
            var fragment = BinaryPrimitives.ReadUInt16BigEndian(frame[(l3 + 6)..]);
            proto = frame[l3 + 9];
            if ((fragment & 0x1FFF) == 0) l4 = l3 + ihl;
        }
        else if (etherType == EtherTypes.IPv6)
        {
            if (frame.Length < l3 + 40) return false;
            if (frame[l3] >> 4 != 6) return false;
            var next = frame[l3 + 6];
            var offset = l3 + 40;
            // Hop-by-hop (0), routing (43) and destination options (60) share one length format.
            for (var hops = 0; hops < 8 && next is 0 or 43 or 60; hops++)
            {
                if (frame.Length < offset + 8) return false;
                var len = (frame[offset + 1] + 1) * 8;
                next = frame[offset];
                offset += len;
            }
            if (offset > frame.Length) return false;
            proto = next;
            l4 = offset;
        }
        if (l4 >= 0 && proto is not (EtherTypes.Tcp or EtherTypes.Udp)) l4 = -1;
        if (l4 >= 0)
        {
            var minimum = proto == EtherTypes.Tcp ? 20 : 8;
            if (frame.Length < l4 + minimum) l4 = -1;
        }
        layout = new FrameLayout { L3Offset = l3, EtherType = etherType, L4Offset = l4, L4Protocol = l4 >= 0 ? proto : (byte)0 };
        return true;
    }
}
