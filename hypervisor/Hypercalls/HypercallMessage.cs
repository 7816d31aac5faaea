using System.Buffers.Binary;

namespace XenIo.Hypervisor.Hypercalls;

/// <summary>Operations of the hypercall protocol (one SOCK_SEQPACKET message each).</summary>
public enum HypercallOp : byte
{
    EvtchnAllocUnbound = 1,
    EvtchnBindInterdomain = 2,
    EvtchnClose = 3,
    EvtchnStatus = 4,
    /// <summary>The allocating end of an unbound port again (after its peer closed).</summary>
    EvtchnEndpoint = 5,
    DecreaseReservation = 6,
    PopulatePhysmap = 7,
    Shutdown = 8,
    /// <summary>dom0 only: a guest's memory descriptor over SCM_RIGHTS.</summary>
    MapForeign = 9,
    /// <summary>dom0 only, no reply: "I am about to map this grant".</summary>
    GrantMapped = 10,
    /// <summary>dom0 only, no reply: "I have unmapped this grant".</summary>
    GrantUnmapped = 11,
    DomainInfo = 12,
}

/// <summary><c>SHUTDOWN_*</c> (sched.h).</summary>
public enum ShutdownReason : uint
{
    Poweroff = 0,
    Reboot = 1,
    Suspend = 2,
    Crash = 3,
    Watchdog = 4,
    SoftReset = 5,
}

/// <summary>
/// The fixed 16-byte header of every message, little-endian:
/// <c>u8 version, u8 op, u16 payload length, u32 request id, s32 result, u32 reserved (0)</c>.
/// A request carries result 0; a reply echoes op and request id and carries a value ≥ 0 or -errno.
/// </summary>
public readonly record struct HypercallHeader(HypercallOp Op, ushort PayloadLength, uint RequestId, int Result)
{
    public const int Size = 16;
    public const byte CurrentVersion = 1;
}

/// <summary>
/// The hypercall wire format: pure span code, no I/O. Every reader checks lengths exactly (a payload
/// that is longer or shorter than its op defines is malformed) and padding must be zero, so one
/// message has exactly one encoding.
/// </summary>
public static class HypercallMessage
{
    /// <summary>Frames in one decrease/populate request (Xen batches extents similarly).</summary>
    public const int MaxFrames = 512;

    public const int MaxSize = HypercallHeader.Size + 4 + MaxFrames * 4;

    public static void WriteHeader(Span<byte> destination, in HypercallHeader header)
    {
        if (destination.Length < HypercallHeader.Size) throw new ArgumentException("buffer too small", nameof(destination));
        destination[0] = HypercallHeader.CurrentVersion;
        destination[1] = (byte)header.Op;
        BinaryPrimitives.WriteUInt16LittleEndian(destination[2..], header.PayloadLength);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[4..], header.RequestId);
        BinaryPrimitives.WriteInt32LittleEndian(destination[8..], header.Result);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[12..], 0);
    }

    /// <summary>Parses a whole message's header: version 1, a known op, reserved 0, length matching the message.</summary>
    public static bool TryReadHeader(ReadOnlySpan<byte> message, out HypercallHeader header)
    {
        header = default;
        if (message.Length < HypercallHeader.Size || message.Length > MaxSize) return false;
        if (message[0] != HypercallHeader.CurrentVersion) return false;
        var op = (HypercallOp)message[1];
        if (op is < HypercallOp.EvtchnAllocUnbound or > HypercallOp.DomainInfo) return false;
        ushort length = BinaryPrimitives.ReadUInt16LittleEndian(message[2..]);
        if (length != message.Length - HypercallHeader.Size) return false;
        if (BinaryPrimitives.ReadUInt32LittleEndian(message[12..]) != 0) return false;
        header = new HypercallHeader(op, length, BinaryPrimitives.ReadUInt32LittleEndian(message[4..]), BinaryPrimitives.ReadInt32LittleEndian(message[8..]));
        return true;
    }

    /// <summary>Writes header + payload; returns the message length.</summary>
    public static int Write(Span<byte> destination, HypercallOp op, uint requestId, int result, ReadOnlySpan<byte> payload)
    {
        WriteHeader(destination, new HypercallHeader(op, checked((ushort)payload.Length), requestId, result));
        payload.CopyTo(destination[HypercallHeader.Size..]);
        return HypercallHeader.Size + payload.Length;
    }

    // ---- request payloads ----

    /// <summary>AllocUnbound, MapForeign: <c>u16 domid, u16 pad</c>.</summary>
    public static int WriteDomid(Span<byte> payload, ushort domid)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(payload, domid);
        BinaryPrimitives.WriteUInt16LittleEndian(payload[2..], 0);
        return 4;
    }

    public static bool TryReadDomid(ReadOnlySpan<byte> payload, out ushort domid)
    {
        domid = 0;
        if (payload.Length != 4 || BinaryPrimitives.ReadUInt16LittleEndian(payload[2..]) != 0) return false;
        domid = BinaryPrimitives.ReadUInt16LittleEndian(payload);
        return true;
    }

    /// <summary>EvtchnClose, EvtchnStatus, EvtchnEndpoint: <c>u32 port</c>. Shutdown: <c>u32 reason</c>.</summary>
    public static int WriteU32(Span<byte> payload, uint value)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(payload, value);
        return 4;
    }

    public static bool TryReadU32(ReadOnlySpan<byte> payload, out uint value)
    {
        value = 0;
        if (payload.Length != 4) return false;
        value = BinaryPrimitives.ReadUInt32LittleEndian(payload);
        return true;
    }

    /// <summary>BindInterdomain: <c>u16 remote dom, u16 pad, u32 remote port</c>. GrantMapped/Unmapped: <c>u16 domid, u16 flags (bit 0 read-only), u32 ref</c>.</summary>
    public static int WriteDomidAndU32(Span<byte> payload, ushort domid, ushort flags, uint value)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(payload, domid);
        BinaryPrimitives.WriteUInt16LittleEndian(payload[2..], flags);
        BinaryPrimitives.WriteUInt32LittleEndian(payload[4..], value);
        return 8;
    }

    public static bool TryReadDomidAndU32(ReadOnlySpan<byte> payload, ushort allowedFlags, out ushort domid, out ushort flags, out uint value)
    {
        domid = flags = 0;
        value = 0;
        if (payload.Length != 8) return false;
        flags = BinaryPrimitives.ReadUInt16LittleEndian(payload[2..]);
        if ((flags & ~allowedFlags) != 0) return false;
        domid = BinaryPrimitives.ReadUInt16LittleEndian(payload);
        value = BinaryPrimitives.ReadUInt32LittleEndian(payload[4..]);
        return true;
    }

    /// <summary>Decrease/Populate: <c>u32 count, u32 frame[count]</c>, 1..<see cref="MaxFrames"/>.</summary>
    public static int WriteFrames(Span<byte> payload, ReadOnlySpan<uint> frames)
    {
        if (frames.Length is 0 or > MaxFrames) throw new ArgumentOutOfRangeException(nameof(frames));
        BinaryPrimitives.WriteUInt32LittleEndian(payload, (uint)frames.Length);
        for (int i = 0; i < frames.Length; i++) BinaryPrimitives.WriteUInt32LittleEndian(payload[(4 + 4 * i)..], frames[i]);
        return 4 + 4 * frames.Length;
    }

    /// <summary>Reads a frame list into <paramref name="frames"/> (at least <see cref="MaxFrames"/> long); returns the count or -1.</summary>
    public static int TryReadFrames(ReadOnlySpan<byte> payload, Span<uint> frames)
    {
        if (payload.Length < 4) return -1;
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(payload);
        if (count is 0 or > MaxFrames || count > (uint)frames.Length || payload.Length != 4 + 4 * (long)count) return -1;
        for (int i = 0; i < (int)count; i++) frames[i] = BinaryPrimitives.ReadUInt32LittleEndian(payload[(4 + 4 * i)..]);
        return (int)count;
    }

    // ---- reply payloads ----

    /// <summary>EvtchnStatus reply: <c>u32 status, u16 remote dom, u16 pad, u32 remote port</c>.</summary>
    public static int WriteStatusReply(Span<byte> payload, uint status, ushort remoteDom, uint remotePort)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(payload, status);
        BinaryPrimitives.WriteUInt16LittleEndian(payload[4..], remoteDom);
        BinaryPrimitives.WriteUInt16LittleEndian(payload[6..], 0);
        BinaryPrimitives.WriteUInt32LittleEndian(payload[8..], remotePort);
        return 12;
    }

    public static bool TryReadStatusReply(ReadOnlySpan<byte> payload, out uint status, out ushort remoteDom, out uint remotePort)
    {
        status = remotePort = 0;
        remoteDom = 0;
        if (payload.Length != 12 || BinaryPrimitives.ReadUInt16LittleEndian(payload[6..]) != 0) return false;
        status = BinaryPrimitives.ReadUInt32LittleEndian(payload);
        remoteDom = BinaryPrimitives.ReadUInt16LittleEndian(payload[4..]);
        remotePort = BinaryPrimitives.ReadUInt32LittleEndian(payload[8..]);
        return true;
    }

    /// <summary>DomainInfo and MapForeign replies: <c>u16 domid, u16 pad, u32 frames, u32 grant frames</c>.</summary>
    public static int WriteDomainReply(Span<byte> payload, ushort domid, uint frames, uint grantFrames)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(payload, domid);
        BinaryPrimitives.WriteUInt16LittleEndian(payload[2..], 0);
        BinaryPrimitives.WriteUInt32LittleEndian(payload[4..], frames);
        BinaryPrimitives.WriteUInt32LittleEndian(payload[8..], grantFrames);
        return 12;
    }

    public static bool TryReadDomainReply(ReadOnlySpan<byte> payload, out ushort domid, out uint frames, out uint grantFrames)
    {
        domid = 0;
        frames = grantFrames = 0;
        if (payload.Length != 12 || BinaryPrimitives.ReadUInt16LittleEndian(payload[2..]) != 0) return false;
        domid = BinaryPrimitives.ReadUInt16LittleEndian(payload);
        frames = BinaryPrimitives.ReadUInt32LittleEndian(payload[4..]);
        grantFrames = BinaryPrimitives.ReadUInt32LittleEndian(payload[8..]);
        return true;
    }

    /// <summary>Whether <paramref name="op"/> gets a reply (the grant map notes do not: they are on the map path).</summary>
    public static bool HasReply(HypercallOp op) => op is not (HypercallOp.GrantMapped or HypercallOp.GrantUnmapped);
}
