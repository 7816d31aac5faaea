using System.Buffers.Binary;

namespace XenIo.VSwitch.Ports;

/// <summary>
/// The 8-byte VXLAN header (RFC 7348 §5): flags (0x08: a valid VNI follows), 24 reserved bits, the
/// 24-bit VNI, 8 reserved bits. The inner Ethernet frame follows without FCS.
/// </summary>
public static class VxlanHeader
{
    public const int Length = 8;
    public const byte FlagVni = 0x08;
    public const int DefaultPort = 4789;
    public const int MaxVni = 0xFFFFFF;

    public static void Write(Span<byte> destination, int vni)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, (uint)FlagVni << 24);
        BinaryPrimitives.WriteUInt32BigEndian(destination[4..], (uint)vni << 8);
    }

    /// <summary>The VNI of a VXLAN packet, or -1 when it is too short or its I flag is clear.</summary>
    public static int ReadVni(ReadOnlySpan<byte> packet)
    {
        if (packet.Length < Length) return -1;
        if ((packet[0] & FlagVni) == 0) return -1;
        return (int)(BinaryPrimitives.ReadUInt32BigEndian(packet[4..]) >> 8);
    }
}
