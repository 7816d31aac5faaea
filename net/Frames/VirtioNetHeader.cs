using System.Buffers.Binary;
using XenIo.Net.Offload;

namespace XenIo.Net.Frames;

/// <summary>
/// <c>struct virtio_net_hdr_mrg_rxbuf</c> (virtio 1.x §5.1.6, linux/virtio_net.h): the 12 bytes a TAP
/// with IFF_VNET_HDR and TUNSETVNETHDRSZ 12 puts before each frame. Little-endian: TAP uses the
/// host's byte order unless TUNSETVNETLE is set, and every host XenIo runs on is little-endian.
/// </summary>
public struct VirtioNetHeader
{
    public const int Size = 12;

    public const byte FlagNeedsCsum = 1;
    public const byte FlagDataValid = 2;

    public const byte GsoNone = 0;
    public const byte GsoTcpV4 = 1;
    public const byte GsoUdp = 3;
    public const byte GsoTcpV6 = 4;
    public const byte GsoEcn = 0x80;

    public byte Flags;
    public byte GsoType;
    public ushort HdrLen;
    public ushort GsoSize;
    public ushort CsumStart;
    public ushort CsumOffset;
    public ushort NumBuffers;

    public static bool TryRead(ReadOnlySpan<byte> source, out VirtioNetHeader header)
    {
        if (source.Length < Size)
        {
            header = default;
            return false;
        }
        header = new VirtioNetHeader
        {
            Flags = source[0],
            GsoType = source[1],
            HdrLen = BinaryPrimitives.ReadUInt16LittleEndian(source[2..]),
            GsoSize = BinaryPrimitives.ReadUInt16LittleEndian(source[4..]),
            CsumStart = BinaryPrimitives.ReadUInt16LittleEndian(source[6..]),
            CsumOffset = BinaryPrimitives.ReadUInt16LittleEndian(source[8..]),
            NumBuffers = BinaryPrimitives.ReadUInt16LittleEndian(source[10..]),
        };
        return true;
    }

    public readonly void Write(Span<byte> destination)
    {
        if (destination.Length < Size) throw new ArgumentException("needs 12 bytes", nameof(destination));
        destination[0] = Flags;
        destination[1] = GsoType;
        BinaryPrimitives.WriteUInt16LittleEndian(destination[2..], HdrLen);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[4..], GsoSize);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[6..], CsumStart);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[8..], CsumOffset);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[10..], NumBuffers);
    }

    /// <summary>
    /// Turns the header a peer wrote into frame metadata. False when the header asks for something the
    /// data plane does not carry (UDP GSO, unknown flags or GSO types, a checksum window outside the
    /// frame, GSO without a size): the caller drops the frame.
    /// </summary>
    public readonly bool TryToMetadata(int frameLength, int ingressPort, out FrameMetadata metadata)
    {
        metadata = FrameMetadata.Plain(frameLength, ingressPort);
        if ((Flags & ~(FlagNeedsCsum | FlagDataValid)) != 0) return false;
        if ((Flags & FlagNeedsCsum) != 0)
        {
            if (CsumStart + CsumOffset + 2 > frameLength) return false;
            metadata.Checksum = ChecksumState.Partial;
            metadata.CsumStart = CsumStart;
            metadata.CsumOffset = CsumOffset;
        }
        else if ((Flags & FlagDataValid) != 0)
        {
            metadata.Checksum = ChecksumState.Validated;
        }
        switch (GsoType & ~GsoEcn)
        {
            case GsoNone:
                break;
            case GsoTcpV4:
                metadata.Gso = Frames.GsoType.TcpV4;
                break;
            case GsoTcpV6:
                metadata.Gso = Frames.GsoType.TcpV6;
                break;
            default:
                return false;
        }
        if (metadata.IsGso)
        {
            // Below the floor the switch's segmenter keeps (Linux's tcp_min_snd_mss), a 64 KiB frame would
            // be thousands of segments for whichever port has to cut it.
            if (GsoSize < TcpSegmenter.MinGsoSize || metadata.Checksum != ChecksumState.Partial) return false;
            metadata.GsoSize = GsoSize;
            metadata.HeaderLength = HdrLen;
        }
        return true;
    }

    /// <summary>The header to send a frame with this metadata to a peer that accepts offloads.</summary>
    public static VirtioNetHeader FromMetadata(in FrameMetadata metadata)
    {
        var header = new VirtioNetHeader();
        switch (metadata.Checksum)
        {
            case ChecksumState.Partial:
                header.Flags = FlagNeedsCsum;
                header.CsumStart = metadata.CsumStart;
                header.CsumOffset = metadata.CsumOffset;
                break;
            case ChecksumState.Validated:
                header.Flags = FlagDataValid;
                break;
        }
        if (metadata.IsGso)
        {
            header.GsoType = metadata.Gso == Frames.GsoType.TcpV4 ? GsoTcpV4 : GsoTcpV6;
            header.GsoSize = metadata.GsoSize;
            header.HdrLen = metadata.HeaderLength;
        }
        return header;
    }
}
