using XenIo.Net.Frames;

namespace XenIo.VSwitch.Core;

/// <summary>
/// A frame in a pooled byte array, with <see cref="Headroom"/> bytes in front so an 802.1Q tag can be
/// pushed in place. Used wherever a frame must outlive the call that produced it (a port's transmit
/// queue, a patch between bridges); the synchronous forwarding path never needs one.
/// </summary>
public sealed class PacketBuffer
{
    public const int Headroom = 64;

    internal PacketBuffer(int capacity, PacketBufferPool? owner)
    {
        Data = new byte[Headroom + capacity];
        Owner = owner;
        Offset = Headroom;
    }

    private PacketBuffer(byte[] data, int offset, int length)
    {
        Data = data;
        Offset = offset;
        Length = length;
        Metadata.Length = length;
    }

    /// <summary>Wraps an existing array (a port's fixed receive buffer) without a pool behind it.</summary>
    public static PacketBuffer Wrap(byte[] data, int offset, int length)
    {
        ArgumentNullException.ThrowIfNull(data);
        CheckFrame(data, offset, length);
        return new PacketBuffer(data, offset, length);
    }

    /// <summary>The fewest bytes a frame has in front of it: room to push an 802.1Q tag in place.</summary>
    public const int MinHeadroom = EtherTypes.VlanTagLength;

    public byte[] Data { get; }

    /// <summary>Where the frame starts in <see cref="Data"/>: at least <see cref="MinHeadroom"/> in, set with <see cref="SetFrame"/>.</summary>
    public int Offset { get; private set; }

    /// <summary>The frame's length: <c>Offset + Length</c> is never past the end of <see cref="Data"/>.</summary>
    public int Length { get; private set; }

    public FrameMetadata Metadata;
    internal PacketBufferPool? Owner { get; }

    public int Capacity => Data.Length - Headroom;
    public Span<byte> Frame => Data.AsSpan(Offset, Length);

    /// <summary>
    /// Points the buffer at the frame a port has put in <see cref="Data"/>. The bounds are checked here,
    /// once, when the frame is set, so the bridge relies on them for every frame of a batch instead of
    /// checking each again; a port that got them wrong fails here, in its own code.
    /// </summary>
    public void SetFrame(int offset, int length)
    {
        CheckFrame(Data, offset, length);
        Offset = offset;
        Length = length;
    }

    private static void CheckFrame(byte[] data, int offset, int length)
    {
        if (offset < MinHeadroom || length < 0 || (long)offset + length > data.Length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"a frame at {offset} of {length} bytes does not fit a {data.Length}-byte buffer with {MinHeadroom} bytes of headroom");
    }

    /// <summary>Copies a frame in (the one copy a queued frame costs).</summary>
    public bool TrySet(ReadOnlySpan<byte> frame, in FrameMetadata metadata)
    {
        if (frame.Length > Capacity) return false;
        Offset = Headroom;
        Length = frame.Length;
        frame.CopyTo(Data.AsSpan(Offset));
        Metadata = metadata;
        Metadata.Length = frame.Length;
        return true;
    }

    public void Return() => Owner?.Return(this);
}

/// <summary>
/// A bounded pool of <see cref="PacketBuffer"/>s: buffers are created on demand up to a limit and then
/// reused, so memory is bounded and steady-state forwarding allocates nothing. <see cref="Rent"/> returns
/// null when every buffer is out; the caller drops the frame and counts <see cref="DropReason.NoBuffer"/>.
/// </summary>
public sealed class PacketBufferPool(int bufferCapacity, int maxBuffers)
{
    private readonly Stack<PacketBuffer> _free = new(maxBuffers);
    private readonly Lock _gate = new();
    private int _created;

    public int BufferCapacity { get; } = bufferCapacity;
    public int MaxBuffers { get; } = maxBuffers;
    public int Created => _created;

    public PacketBuffer? Rent()
    {
        lock (_gate)
        {
            if (_free.TryPop(out var buffer)) return buffer;
            if (_created >= MaxBuffers) return null;
            _created++;
        }
        return new PacketBuffer(BufferCapacity, this);
    }

    internal void Return(PacketBuffer buffer)
    {
        buffer.SetFrame(PacketBuffer.Headroom, 0);
        lock (_gate) _free.Push(buffer);
    }
}
