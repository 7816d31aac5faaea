using System.Buffers.Binary;

namespace XenIo.VSwitch.Ports;

/// <summary>What <see cref="StreamFraming.TryRead"/> found at the start of a buffer.</summary>
public enum StreamFrameStatus
{
    NeedMore,
    Frame,
    /// <summary>A length QEMU itself would refuse: the connection must be closed.</summary>
    Malformed,
}

/// <summary>
/// QEMU's <c>-netdev stream</c> / <c>-netdev socket</c> framing: each frame is a u32 big-endian length
/// (not counting itself) followed by the Ethernet frame without FCS and without a virtio header. QEMU
/// never sends nor accepts more than 69,632 bytes (NET_BUFSIZE 4096 + 65536) and closes the connection
/// on a larger length; a zero length carries no frame, so it is treated as garbage too.
/// </summary>
public static class StreamFraming
{
    public const int PrefixLength = 4;
    public const int MaxFrameLength = 69_632;

    public static StreamFrameStatus TryRead(ReadOnlySpan<byte> buffer, out int frameLength)
    {
        frameLength = 0;
        if (buffer.Length < PrefixLength) return StreamFrameStatus.NeedMore;
        var length = BinaryPrimitives.ReadUInt32BigEndian(buffer);
        if (length == 0 || length > MaxFrameLength) return StreamFrameStatus.Malformed;
        frameLength = (int)length;
        return buffer.Length - PrefixLength >= length ? StreamFrameStatus.Frame : StreamFrameStatus.NeedMore;
    }

    public static void WritePrefix(Span<byte> destination, int frameLength) =>
        BinaryPrimitives.WriteUInt32BigEndian(destination, (uint)frameLength);
}
