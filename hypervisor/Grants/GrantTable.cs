using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Memory;

namespace XenIo.Hypervisor.Grants;

/// <summary>
/// The guest's side of its grant table (Linux's <c>gnttab</c> v1): grant a domain access to one of
/// its frames and end that access. The table is frames 0..<see cref="GrantFrames"/>-1 of the
/// guest's own memory. Refs 0..7 are reserved for the toolstack (0 console, 1 xenstore, seeded with
/// <see cref="GrantReserved"/>); the free list hands out the others.
/// </summary>
public sealed unsafe class GrantTable
{
    private readonly DomainMemory _memory;
    private readonly uint[] _freeRefs;
    private readonly object _gate = new();
    private int _freeCount;

    public GrantTable(DomainMemory memory, uint grantFrames)
    {
        if (grantFrames == 0 || grantFrames >= memory.FrameCount)
            throw new ArgumentOutOfRangeException(nameof(grantFrames), grantFrames, "the grant table must leave frames for the guest");
        _memory = memory;
        GrantFrames = grantFrames;
        EntryCount = GrantEntries.EntriesIn(grantFrames);
        _freeRefs = new uint[EntryCount - GrantLimits.ReservedEntries];
        for (uint r = EntryCount; r > GrantLimits.ReservedEntries; r--) _freeRefs[_freeCount++] = r - 1;
    }

    public uint GrantFrames { get; }

    public uint EntryCount { get; }

    public int FreeRefs { get { lock (_gate) return _freeCount; } }

    /// <summary>
    /// <c>gnttab_grant_foreign_access</c>: lets <paramref name="domid"/> read (or read and write)
    /// <paramref name="frame"/>. False when every ref is in use.
    /// </summary>
    public bool TryGrantAccess(ushort domid, uint frame, bool readOnly, out uint gref)
    {
        if (!_memory.Contains(frame)) throw new ArgumentOutOfRangeException(nameof(frame), frame, "not a frame of this domain");
        lock (_gate)
        {
            if (_freeCount == 0)
            {
                gref = 0;
                return false;
            }
            gref = _freeRefs[--_freeCount];
        }
        Publish(gref, domid, frame, readOnly);
        return true;
    }

    public uint GrantAccess(ushort domid, uint frame, bool readOnly) =>
        TryGrantAccess(domid, frame, readOnly, out uint gref) ? gref : throw new InvalidOperationException("grant table full");

    /// <summary>Seeds a reserved ref (0..7) as the toolstack does for the console and xenstore pages.</summary>
    public void GrantReserved(uint gref, ushort domid, uint frame, bool readOnly = false)
    {
        if (gref >= GrantLimits.ReservedEntries) throw new ArgumentOutOfRangeException(nameof(gref), gref, "reserved refs are 0..7");
        if (!_memory.Contains(frame)) throw new ArgumentOutOfRangeException(nameof(frame));
        Publish(gref, domid, frame, readOnly);
    }

    /// <summary>
    /// <c>gnttab_end_foreign_access_ref</c>: revokes a grant unless the other domain is using it
    /// (GTF_reading/GTF_writing set). The flags word is swapped to zero with a CAS so a backend
    /// cannot pin the entry between our check and our write. On success a non-reserved ref is freed.
    /// </summary>
    public bool EndAccess(uint gref)
    {
        if (gref >= EntryCount) throw new ArgumentOutOfRangeException(nameof(gref));
        ref ushort flags = ref *(ushort*)GrantEntries.Combo(_memory, gref);
        ushort seen = Volatile.Read(ref flags);
        while (true)
        {
            if ((seen & GrantEntries.InUse) != 0) return false;
            ushort previous = Interlocked.CompareExchange(ref flags, 0, seen);
            if (previous == seen) break;
            seen = previous;
        }
        if (gref >= GrantLimits.ReservedEntries)
        {
            lock (_gate) _freeRefs[_freeCount++] = gref;
        }
        return true;
    }

    /// <summary>The entry as the guest sees it now (diagnostics and tests).</summary>
    public GrantEntryV1 Read(uint gref)
    {
        if (gref >= EntryCount) throw new ArgumentOutOfRangeException(nameof(gref));
        uint combo = Volatile.Read(ref *GrantEntries.Combo(_memory, gref));
        return new GrantEntryV1
        {
            Flags = GrantEntries.FlagsOf(combo),
            Domid = GrantEntries.DomidOf(combo),
            Frame = Volatile.Read(ref *GrantEntries.Frame(_memory, gref)),
        };
    }

    /// <summary>Writes an entry raw, as a hostile or buggy guest could (tests).</summary>
    internal void WriteRaw(uint gref, GrantFlags flags, ushort domid, uint frame)
    {
        Volatile.Write(ref *GrantEntries.Frame(_memory, gref), frame);
        Volatile.Write(ref *GrantEntries.Combo(_memory, gref), (uint)domid << 16 | (ushort)flags);
    }

    private void Publish(uint gref, ushort domid, uint frame, bool readOnly)
    {
        // gnttab_update_entry_v1: domid and frame first, then (after a write barrier) the flags
        // that make the entry valid, so a backend never sees a valid entry with a stale frame.
        ref ushort domidField = ref *(ushort*)((byte*)GrantEntries.Combo(_memory, gref) + GrantEntryV1.DomidOffset);
        Volatile.Write(ref domidField, domid);
        Volatile.Write(ref *GrantEntries.Frame(_memory, gref), frame);
        Interlocked.MemoryBarrier();
        var flags = GrantFlags.PermitAccess | (readOnly ? GrantFlags.Readonly : 0);
        Volatile.Write(ref *(ushort*)GrantEntries.Combo(_memory, gref), (ushort)flags);
    }
}
