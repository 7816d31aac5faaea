namespace XenIo.Hypervisor.Memory;

/// <summary>
/// hyperd's side of a domain's memory: which frames are populated and charged to the
/// <see cref="HostPagePool"/>, and the balloon operations (<c>XENMEM_decrease_reservation</c>,
/// <c>XENMEM_populate_physmap</c>) that really give pages back to the host by punching holes in the
/// memfd and really take them again. Frame lists come from the guest: each one is checked, and the
/// result is the count done, as Xen returns (the guest learns where a batch stopped).
/// </summary>
public sealed class DomainReservation : IDisposable
{
    private readonly DomainMemory _memory;
    private readonly HostPagePool _pool;
    private readonly ulong[] _populated;
    private readonly object _gate = new();
    private long _populatedCount;
    private bool _released;

    private DomainReservation(DomainMemory memory, HostPagePool pool, uint protectedFrames)
    {
        _memory = memory;
        _pool = pool;
        ProtectedFrames = protectedFrames;
        _populated = new ulong[(memory.FrameCount + 63) / 64];
        for (uint f = 0; f < memory.FrameCount; f++) _populated[f >> 6] |= 1UL << (int)(f & 63);
        _populatedCount = memory.FrameCount;
    }

    /// <summary>
    /// Charges all of <paramref name="memory"/>'s frames to <paramref name="pool"/>; null when the pool
    /// cannot hold them. Frames below <paramref name="protectedFrames"/> (the grant table) cannot be ballooned out.
    /// </summary>
    public static DomainReservation? TryCreate(DomainMemory memory, HostPagePool pool, uint protectedFrames)
    {
        if (!pool.TryReserve(memory.FrameCount)) return null;
        return new DomainReservation(memory, pool, protectedFrames);
    }

    public uint ProtectedFrames { get; }

    public long PopulatedPages => Interlocked.Read(ref _populatedCount);

    public bool IsPopulated(uint frame)
    {
        lock (_gate) return frame < _memory.FrameCount && (_populated[frame >> 6] & (1UL << (int)(frame & 63))) != 0;
    }

    /// <summary>
    /// Gives the listed frames back to the host. Stops at the first frame that is outside the domain,
    /// a grant table frame or already released. Returns how many were released.
    /// </summary>
    public int DecreaseReservation(ReadOnlySpan<uint> frames)
    {
        lock (_gate)
        {
            if (_released) return 0;
            int done = 0;
            foreach (uint frame in frames)
            {
                if (frame >= _memory.FrameCount || frame < ProtectedFrames) break;
                ref ulong word = ref _populated[frame >> 6];
                ulong bit = 1UL << (int)(frame & 63);
                if ((word & bit) == 0) break;
                if (_memory.PunchHole(frame) != 0) break;
                word &= ~bit;
                _populatedCount--;
                _pool.Release(1);
                done++;
            }
            return done;
        }
    }

    /// <summary>
    /// Takes the listed frames back from the host, zero-filled and charged to the pool. Stops at the
    /// first frame that is outside the domain or already populated, or when the pool is exhausted.
    /// Returns how many were populated.
    /// </summary>
    public int PopulatePhysmap(ReadOnlySpan<uint> frames)
    {
        lock (_gate)
        {
            if (_released) return 0;
            int done = 0;
            foreach (uint frame in frames)
            {
                if (frame >= _memory.FrameCount) break;
                ref ulong word = ref _populated[frame >> 6];
                ulong bit = 1UL << (int)(frame & 63);
                if ((word & bit) != 0) break;
                if (!_pool.TryReserve(1)) break;
                // A punched hole already reads as zeros; allocating it makes the page real again
                // (visible in st_blocks) so the guest's later writes cannot fail for lack of memory.
                if (_memory.Allocate(frame) != 0)
                {
                    _pool.Release(1);
                    break;
                }
                word |= bit;
                _populatedCount++;
                done++;
            }
            return done;
        }
    }

    /// <summary>
    /// Punches out again every ballooned-out frame that has memory behind it. A hole in a memfd is
    /// not a fault the way a missing page is in Xen: any touch through a shared mapping (even a read)
    /// allocates the page afresh, outside the pool's accounting. A guest cannot grow past its memfd,
    /// but it could keep pages it gave back; hyperd calls this to take them. Returns how many it took.
    /// </summary>
    public int ReclaimTouchedFrames()
    {
        lock (_gate)
        {
            if (_released) return 0;
            int reclaimed = 0;
            for (uint frame = ProtectedFrames; frame < _memory.FrameCount; frame++)
            {
                if ((_populated[frame >> 6] & (1UL << (int)(frame & 63))) != 0) continue;
                if (_memory.IsBacked(frame) && _memory.PunchHole(frame) == 0) reclaimed++;
            }
            return reclaimed;
        }
    }

    /// <summary>Returns every page still charged to the pool (domain destruction).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_released) return;
            _released = true;
            _pool.Release(_populatedCount);
            _populatedCount = 0;
        }
    }
}
