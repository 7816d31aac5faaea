namespace XenIo.Hypervisor.Memory;

/// <summary>
/// The guest's page allocator: hands out frames above the grant table (frames 0..grantFrames-1 are
/// the table) for rings and buffers. The guest owns it; nothing here is shared. Frames the guest has
/// ballooned out are simply not returned to it until populated again. Thread-safe: the agent's
/// frontends (console, netfront, blkfront, balloon) allocate from one allocator on their own threads.
/// </summary>
public sealed class GuestPageAllocator
{
    private readonly uint[] _free;
    private readonly ulong[] _allocated;
    private readonly Lock _gate = new();
    private int _freeCount;

    public GuestPageAllocator(uint firstFrame, uint frameCount)
    {
        if (firstFrame >= frameCount) throw new ArgumentOutOfRangeException(nameof(firstFrame), "no frames left above the grant table");
        FirstFrame = firstFrame;
        FrameCount = frameCount;
        _free = new uint[frameCount - firstFrame];
        _allocated = new ulong[(frameCount + 63) / 64];
        // Push high frames first so allocation starts at the lowest frame.
        for (uint f = frameCount; f > firstFrame; f--) _free[_freeCount++] = f - 1;
    }

    public uint FirstFrame { get; }

    public uint FrameCount { get; }

    public int FreeFrames { get { lock (_gate) return _freeCount; } }

    public bool TryAllocate(out uint frame)
    {
        lock (_gate)
        {
            if (_freeCount == 0)
            {
                frame = 0;
                return false;
            }
            frame = _free[--_freeCount];
            _allocated[frame >> 6] |= 1UL << (int)(frame & 63);
            return true;
        }
    }

    /// <summary>
    /// Takes a specific frame out of the free list: pages the toolstack placed before the guest started
    /// (the console and xenstore rings) must never be handed out again.
    /// </summary>
    public void Reserve(uint frame)
    {
        if (frame < FirstFrame || frame >= FrameCount) throw new ArgumentOutOfRangeException(nameof(frame));
        lock (_gate)
        {
            ulong bit = 1UL << (int)(frame & 63);
            if ((_allocated[frame >> 6] & bit) != 0) throw new InvalidOperationException($"frame {frame} is already allocated");
            var at = Array.LastIndexOf(_free, frame, _freeCount - 1, _freeCount);
            _free[at] = _free[--_freeCount];
            _allocated[frame >> 6] |= bit;
        }
    }

    public uint Allocate() => TryAllocate(out uint frame) ? frame : throw new InvalidOperationException("guest out of free pages");

    public void Free(uint frame)
    {
        if (frame < FirstFrame || frame >= FrameCount) throw new ArgumentOutOfRangeException(nameof(frame));
        ulong bit = 1UL << (int)(frame & 63);
        lock (_gate)
        {
            if ((_allocated[frame >> 6] & bit) == 0) throw new InvalidOperationException($"frame {frame} is not allocated");
            _allocated[frame >> 6] &= ~bit;
            _free[_freeCount++] = frame;
        }
    }
}
