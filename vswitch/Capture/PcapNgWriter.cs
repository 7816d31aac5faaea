using System.Buffers.Binary;
using System.Text;

namespace XenIo.VSwitch.Capture;

/// <summary>
/// Writes pcapng (draft-ietf-opsawg-pcapng): a Section Header Block, one Interface Description Block per
/// switch port (if_name, if_tsresol = 9 so timestamps are nanoseconds), and Enhanced Packet Blocks whose
/// epb_flags carry the direction, so one file holds per-port, per-direction capture. Interfaces can be
/// added at any time before their first packet. Every block is built in a reused buffer and written
/// with one <see cref="Stream.Write(ReadOnlySpan{byte})"/>.
/// </summary>
public sealed class PcapNgWriter
{
    public const uint SectionHeaderType = 0x0A0D0D0A;
    public const uint ByteOrderMagic = 0x1A2B3C4D;
    public const uint InterfaceDescriptionType = 1;
    public const uint EnhancedPacketType = 6;
    public const ushort OptEndOfOpt = 0;
    public const ushort OptIfName = 2;
    public const ushort OptIfTsresol = 9;
    public const ushort OptEpbFlags = 2;
    public const uint FlagInbound = 1;
    public const uint FlagOutbound = 2;

    private readonly Stream _stream;
    private byte[] _block = new byte[4096];

    public PcapNgWriter(Stream stream, int snaplen = PcapWriter.DefaultSnaplen)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (snaplen <= 0) throw new ArgumentOutOfRangeException(nameof(snaplen));
        _stream = stream;
        Snaplen = snaplen;
        var b = _block.AsSpan();
        BinaryPrimitives.WriteUInt32LittleEndian(b, SectionHeaderType);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], 28);
        BinaryPrimitives.WriteUInt32LittleEndian(b[8..], ByteOrderMagic);
        BinaryPrimitives.WriteUInt16LittleEndian(b[12..], 1);
        BinaryPrimitives.WriteUInt16LittleEndian(b[14..], 0);
        BinaryPrimitives.WriteInt64LittleEndian(b[16..], -1); // section length unknown
        BinaryPrimitives.WriteUInt32LittleEndian(b[24..], 28);
        _stream.Write(b[..28]);
    }

    public int Snaplen { get; }
    public int Interfaces { get; private set; }
    public long Records { get; private set; }

    /// <summary>Writes an Interface Description Block and returns the interface id packets refer to.</summary>
    public int AddInterface(string name)
    {
        var nameBytes = Encoding.UTF8.GetBytes(name);
        if (nameBytes.Length > 1024) throw new ArgumentException("interface name too long", nameof(name));
        var length = 8 + 8 + 4 + Pad(nameBytes.Length) + 4 + 4 + 4 + 4;
        var b = _block.AsSpan(0, length);
        b.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(b, InterfaceDescriptionType);
        BinaryPrimitives.WriteInt32LittleEndian(b[4..], length);
        BinaryPrimitives.WriteUInt16LittleEndian(b[8..], (ushort)PcapWriter.LinkTypeEthernet);
        BinaryPrimitives.WriteInt32LittleEndian(b[12..], Snaplen);
        var o = 16;
        BinaryPrimitives.WriteUInt16LittleEndian(b[o..], OptIfName);
        BinaryPrimitives.WriteUInt16LittleEndian(b[(o + 2)..], (ushort)nameBytes.Length);
        nameBytes.CopyTo(b[(o + 4)..]);
        o += 4 + Pad(nameBytes.Length);
        BinaryPrimitives.WriteUInt16LittleEndian(b[o..], OptIfTsresol);
        BinaryPrimitives.WriteUInt16LittleEndian(b[(o + 2)..], 1);
        b[o + 4] = 9; // 10^-9 s
        o += 8;
        o += 4; // opt_endofopt: four zero bytes
        BinaryPrimitives.WriteInt32LittleEndian(b[o..], length);
        _stream.Write(b);
        return Interfaces++;
    }

    /// <summary>Appends an Enhanced Packet Block for interface <paramref name="interfaceId"/>.</summary>
    public void Write(int interfaceId, long unixNanoseconds, ReadOnlySpan<byte> frame, int originalLength, uint direction)
    {
        if ((uint)interfaceId >= (uint)Interfaces) throw new ArgumentOutOfRangeException(nameof(interfaceId));
        var captured = Math.Min(frame.Length, Snaplen);
        var length = 28 + Pad(captured) + 8 + 4 + 4;
        if (_block.Length < length) _block = new byte[Math.Max(length, _block.Length * 2)];
        var b = _block.AsSpan(0, length);
        BinaryPrimitives.WriteUInt32LittleEndian(b, EnhancedPacketType);
        BinaryPrimitives.WriteInt32LittleEndian(b[4..], length);
        BinaryPrimitives.WriteInt32LittleEndian(b[8..], interfaceId);
        var ts = (ulong)unixNanoseconds;
        BinaryPrimitives.WriteUInt32LittleEndian(b[12..], (uint)(ts >> 32));
        BinaryPrimitives.WriteUInt32LittleEndian(b[16..], (uint)ts);
        BinaryPrimitives.WriteInt32LittleEndian(b[20..], captured);
        BinaryPrimitives.WriteInt32LittleEndian(b[24..], Math.Max(originalLength, captured));
        frame[..captured].CopyTo(b[28..]);
        var o = 28 + captured;
        var padded = 28 + Pad(captured);
        b[o..padded].Clear();
        o = padded;
        BinaryPrimitives.WriteUInt16LittleEndian(b[o..], OptEpbFlags);
        BinaryPrimitives.WriteUInt16LittleEndian(b[(o + 2)..], 4);
        BinaryPrimitives.WriteUInt32LittleEndian(b[(o + 4)..], direction & 3);
        o += 8;
        BinaryPrimitives.WriteUInt32LittleEndian(b[o..], 0);
        o += 4;
        BinaryPrimitives.WriteInt32LittleEndian(b[o..], length);
        _stream.Write(b);
        Records++;
    }

    public void Flush() => _stream.Flush();

    private static int Pad(int n) => (n + 3) & ~3;
}
