using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Interop;
using XenIo.Hypervisor.Memory;

namespace XenIo.Hypervisor.Grants;

/// <summary>
/// A backend's view of a foreign (guest) domain: its own mapping of the guest's memory and the grant
/// checks Xen makes before touching it (grant_table.c). <see cref="Copy"/> is <c>GNTTABOP_copy</c>;
/// <see cref="Map"/>/<see cref="Unmap"/> are <c>GNTTABOP_map_grant_ref</c>/<c>unmap_grant_ref</c>.
/// Every grant ref, offset, length and frame comes from the guest and is checked; a failure is a
/// <see cref="GrantStatus"/>, never an exception.
/// </summary>
/// <remarks>
/// Pins (Xen's active entry <c>pin</c> counts) are kept per backend process; GTF_reading/GTF_writing
/// in the shared entry are set by CAS on the flags+domid word when a pin is taken and cleared when the
/// last pin of that kind goes. Two dom0 processes pinning the same ref at once are not counted
/// together (Xen keeps one count for all of dom0); hyperd's ledger covers mappings across crashes.
/// </remarks>
public sealed unsafe class ForeignDomain : IDisposable
{
    /// <summary>Xen bounds CAS retries on a shared entry: a guest rewriting it faster than we swap is misbehaving.</summary>
    private const int MaxCasRetries = 5;
    private const int ReaderPin = 1;
    private const int WriterPin = 1 << 16;
    private const int WriterMask = 0x7FFF << 16;
    /// <summary>Ops pinned per lock hold in <see cref="Copy"/>.</summary>
    private const int CopyChunk = 32;

    private readonly DomainMemory _memory;
    private readonly IGrantMapRecorder? _recorder;
    /// <summary>Per ref: pins of any kind (bits 0..15) and writer pins (16..30); under <see cref="_pinLock"/>.</summary>
    private readonly int[] _pins;
    /// <summary>
    /// Guards <see cref="_pins"/> and the flag transitions that follow them. Held only while pinning
    /// or unpinning (a batch's worth at a time in <see cref="Copy"/>), never across a copy.
    /// </summary>
    private int _pinLock;
    private readonly object _maptrackGate = new();
    private MapTrackEntry[] _maptrack = new MapTrackEntry[16];
    private int _maptrackUsed;

    public ForeignDomain(DomainMemory memory, ushort domid, uint grantFrames, ushort localDomid = DomainIds.Dom0, IGrantMapRecorder? recorder = null)
    {
        if (grantFrames == 0 || grantFrames >= memory.FrameCount) throw new ArgumentOutOfRangeException(nameof(grantFrames));
        _memory = memory;
        Domid = domid;
        LocalDomid = localDomid;
        GrantFrames = grantFrames;
        EntryCount = GrantEntries.EntriesIn(grantFrames);
        _recorder = recorder;
        _pins = new int[EntryCount];
    }

    /// <summary>The guest.</summary>
    public ushort Domid { get; }

    /// <summary>Who we are: a grant must name this domain to be usable by us.</summary>
    public ushort LocalDomid { get; }

    public uint GrantFrames { get; }

    public uint EntryCount { get; }

    public DomainMemory Memory => _memory;

    /// <summary>Test hook: runs between reading an entry and swapping it, where a guest could rewrite it.</summary>
    internal Action<uint>? BeforeCompareExchange;

    /// <summary>
    /// <c>GNTTABOP_copy</c> for grants of this domain only (the common backend case): a status per op,
    /// a failed op does not stop the batch. Ops are pinned a chunk at a time under one lock hold,
    /// copied, then unpinned, so the per-op cost is the two CASes on the shared entry Xen also pays.
    /// </summary>
    public void Copy(Span<GrantCopyOp> ops, Span<byte> local)
    {
        // The scratch lives here, apart from the work: a method with stackalloc is compiled once without
        // profile data, while CopyPinned gets the tiered, profile-guided code of the hot path.
        byte** sources = stackalloc byte*[CopyChunk];
        byte** dests = stackalloc byte*[CopyChunk];
        fixed (byte* localBase = local)
        {
            byte* table = _memory.Base;
            for (int start = 0; start < ops.Length; start += CopyChunk)
                CopyPinned(ops.Slice(start, Math.Min(CopyChunk, ops.Length - start)), table, localBase, local.Length, sources, dests);
        }
    }

    /// <summary>Up to <see cref="CopyChunk"/> ops: pinned under one lock hold, copied, then unpinned under another.</summary>
    private void CopyPinned(Span<GrantCopyOp> chunk, byte* table, byte* localBase, int localLength, byte** sources, byte** dests)
    {
        LockPins();
        try
        {
            PinChunkLocked(chunk, table, localBase, localLength, sources, dests);
        }
        finally
        {
            UnlockPins();
        }
        for (int i = 0; i < chunk.Length; i++)
            if (chunk[i].Status == GrantStatus.Okay) PageCopy.Copy(sources[i], dests[i], chunk[i].Length);
        LockPins();
        ReleaseChunkLocked(chunk, table);
        UnlockPins();
    }

    /// <summary>The pin pass of <see cref="Copy"/>: a status and, when it is Okay, the two addresses per op.</summary>
    private void PinChunkLocked(Span<GrantCopyOp> chunk, byte* table, byte* localBase, int localLength, byte** sources, byte** dests)
    {
        for (int i = 0; i < chunk.Length; i++)
            chunk[i].Status = PinForCopyLocked(ref chunk[i], table, localBase, localLength, out sources[i], out dests[i]);
    }

    /// <summary>The release pass of <see cref="Copy"/>: drops the pins of every op that took them.</summary>
    private void ReleaseChunkLocked(Span<GrantCopyOp> chunk, byte* table)
    {
        for (int i = 0; i < chunk.Length; i++)
        {
            ref GrantCopyOp op = ref chunk[i];
            if (op.Status != GrantStatus.Okay) continue;
            if ((op.Flags & GrantCopyFlags.DestGref) != 0) ReleaseLocked(table, op.Dest.Ref, readOnly: false);
            if ((op.Flags & GrantCopyFlags.SourceGref) != 0) ReleaseLocked(table, op.Source.Ref, readOnly: true);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private GrantStatus PinForCopyLocked(ref GrantCopyOp op, byte* table, byte* localBase, int localLength, out byte* source, out byte* dest)
    {
        source = dest = null;
        var status = CheckCopyArgs(ref op, localLength);
        if (status != GrantStatus.Okay) return status;
        bool sourceGref = (op.Flags & GrantCopyFlags.SourceGref) != 0;
        bool destGref = (op.Flags & GrantCopyFlags.DestGref) != 0;
        if ((sourceGref && op.Source.Domid != Domid) || (destGref && op.Dest.Domid != Domid)) return GrantStatus.BadDomain;
        if (sourceGref)
        {
            status = AcquireLocked(table, op.Source.Ref, readOnly: true, map: false, out uint frame);
            if (status != GrantStatus.Okay) return status;
            source = DomainMemory.PageAt(table, frame) + op.Source.Offset;
        }
        else
        {
            source = localBase + op.Source.Offset;
        }
        if (destGref)
        {
            status = AcquireLocked(table, op.Dest.Ref, readOnly: false, map: false, out uint frame);
            if (status != GrantStatus.Okay)
            {
                if (sourceGref) ReleaseLocked(table, op.Source.Ref, readOnly: true);
                return status;
            }
            dest = DomainMemory.PageAt(table, frame) + op.Dest.Offset;
        }
        else
        {
            dest = localBase + op.Dest.Offset;
        }
        return GrantStatus.Okay;
    }

    /// <summary>The checks that need no grant entry: who may be addressed how, and page/buffer bounds.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static GrantStatus CheckCopyArgs(ref GrantCopyOp op, int localLength)
    {
        bool sourceGref = (op.Flags & GrantCopyFlags.SourceGref) != 0;
        bool destGref = (op.Flags & GrantCopyFlags.DestGref) != 0;
        uint length = op.Length;
        // Only DOMID_SELF may be addressed by something other than a grant.
        if ((!sourceGref && op.Source.Domid != DomainIds.Self) || (!destGref && op.Dest.Domid != DomainIds.Self))
            return GrantStatus.PermissionDenied;
        if ((op.Flags & ~(GrantCopyFlags.SourceGref | GrantCopyFlags.DestGref)) != 0)
            return GrantStatus.BadCopyArg;
        // "copy beyond page area": 64-bit sums so a huge offset cannot wrap.
        if (sourceGref ? (ulong)op.Source.Offset + length > DomainMemory.PageSize : (ulong)op.Source.Offset + length > (ulong)localLength)
            return GrantStatus.BadCopyArg;
        if (destGref ? (ulong)op.Dest.Offset + length > DomainMemory.PageSize : (ulong)op.Dest.Offset + length > (ulong)localLength)
            return GrantStatus.BadCopyArg;
        return GrantStatus.Okay;
    }

    /// <summary>
    /// <c>GNTTABOP_copy</c> over a batch: each op's status is written back and a failed op does not
    /// stop the batch. Gref sides name one of <paramref name="domains"/> (guest-to-guest copies name two).
    /// </summary>
    public static void CopyBatch(Span<GrantCopyOp> ops, Span<byte> local, ReadOnlySpan<ForeignDomain> domains)
    {
        fixed (byte* localBase = local)
        {
            for (int i = 0; i < ops.Length; i++)
            {
                ref GrantCopyOp op = ref ops[i];
                op.Status = CopyOne(ref op, localBase, local.Length, domains);
            }
        }
    }

    private static GrantStatus CopyOne(ref GrantCopyOp op, byte* localBase, int localLength, ReadOnlySpan<ForeignDomain> domains)
    {
        var check = CheckCopyArgs(ref op, localLength);
        if (check != GrantStatus.Okay) return check;
        bool sourceGref = (op.Flags & GrantCopyFlags.SourceGref) != 0;
        bool destGref = (op.Flags & GrantCopyFlags.DestGref) != 0;
        uint length = op.Length;

        ForeignDomain? sourceDomain = null, destDomain = null;
        if (sourceGref && (sourceDomain = Find(domains, op.Source.Domid)) is null) return GrantStatus.BadDomain;
        if (destGref && (destDomain = Find(domains, op.Dest.Domid)) is null) return GrantStatus.BadDomain;

        byte* source, dest;
        if (sourceDomain is not null)
        {
            var status = sourceDomain.Acquire(op.Source.Ref, readOnly: true, map: false, out uint frame);
            if (status != GrantStatus.Okay) return status;
            source = sourceDomain._memory.PagePointer(frame) + op.Source.Offset;
        }
        else
        {
            source = localBase + op.Source.Offset;
        }
        if (destDomain is not null)
        {
            var status = destDomain.Acquire(op.Dest.Ref, readOnly: false, map: false, out uint frame);
            if (status != GrantStatus.Okay)
            {
                sourceDomain?.Release(op.Source.Ref, readOnly: true);
                return status;
            }
            dest = destDomain._memory.PagePointer(frame) + op.Dest.Offset;
        }
        else
        {
            dest = localBase + op.Dest.Offset;
        }

        PageCopy.Copy(source, dest, (int)length);

        destDomain?.Release(op.Dest.Ref, readOnly: false);
        sourceDomain?.Release(op.Source.Ref, readOnly: true);
        return GrantStatus.Okay;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ForeignDomain? Find(ReadOnlySpan<ForeignDomain> domains, ushort domid)
    {
        foreach (var d in domains)
            if (d.Domid == domid) return d;
        return null;
    }

    /// <summary>
    /// <c>GNTTABOP_map_grant_ref</c>: pins the grant and maps its page on its own, with the protection
    /// the grant allows (a read-only grant's page is mapped PROT_READ: a write faults). The mapping
    /// holds GTF_reading (and GTF_writing) until <see cref="Unmap(int)"/>.
    /// </summary>
    public GrantStatus Map(uint gref, bool readOnly, out GrantMapping mapping)
    {
        mapping = default;
        if (gref >= EntryCount) return GrantStatus.BadGntref;
        // Tell hyperd first: if we die after pinning, it knows what to release. If it cannot be told,
        // a pin could outlive us unnoticed, so the map fails (the request fails, not the daemon).
        if (_recorder is not null && !_recorder.Mapped(Domid, gref, readOnly)) return GrantStatus.GeneralError;
        var status = Acquire(gref, readOnly, map: true, out uint frame);
        if (status != GrantStatus.Okay)
        {
            _recorder?.Unmapped(Domid, gref, readOnly);
            return status;
        }
        int prot = Libc.PROT_READ | (readOnly ? 0 : Libc.PROT_WRITE);
        nint address = Libc.mmap(0, DomainMemory.PageSize, prot, Libc.MAP_SHARED, _memory.Fd, (long)frame << DomainMemory.PageShift);
        if (address == Libc.MAP_FAILED)
        {
            Release(gref, readOnly);
            _recorder?.Unmapped(Domid, gref, readOnly);
            return GrantStatus.NoDeviceSpace;
        }
        int handle;
        lock (_maptrackGate)
        {
            handle = -1;
            for (int i = 0; i < _maptrack.Length; i++)
            {
                if (!_maptrack[i].InUse)
                {
                    handle = i;
                    break;
                }
            }
            if (handle < 0)
            {
                handle = _maptrack.Length;
                Array.Resize(ref _maptrack, _maptrack.Length * 2);
            }
            _maptrack[handle] = new MapTrackEntry { InUse = true, Ref = gref, ReadOnly = readOnly, Address = address };
            _maptrackUsed++;
        }
        mapping = new GrantMapping(handle, gref, readOnly, (byte*)address);
        return GrantStatus.Okay;
    }

    /// <summary><c>GNTTABOP_unmap_grant_ref</c>: unmaps the page and drops the pin; a bad handle is GNTST_bad_handle.</summary>
    public GrantStatus Unmap(int handle)
    {
        MapTrackEntry entry;
        lock (_maptrackGate)
        {
            if ((uint)handle >= (uint)_maptrack.Length || !_maptrack[handle].InUse) return GrantStatus.BadHandle;
            entry = _maptrack[handle];
            _maptrack[handle] = default;
            _maptrackUsed--;
        }
        Libc.munmap(entry.Address, DomainMemory.PageSize);
        Release(entry.Ref, entry.ReadOnly);
        _recorder?.Unmapped(Domid, entry.Ref, entry.ReadOnly);
        return GrantStatus.Okay;
    }

    public GrantStatus Unmap(in GrantMapping mapping) => Unmap(mapping.Handle);

    public int MappedCount { get { lock (_maptrackGate) return _maptrackUsed; } }

    /// <summary>
    /// Pins a grant: Xen's <c>_set_status_v1</c> then the frame check. The flags+domid word is
    /// re-validated inside the CAS loop, so an entry rewritten between our check and our swap is
    /// checked again (and refused if it is no longer ours, or given up on after a few tries).
    /// </summary>
    internal GrantStatus Acquire(uint gref, bool readOnly, bool map, out uint frame)
    {
        byte* table = _memory.Base;
        LockPins();
        try
        {
            return AcquireLocked(table, gref, readOnly, map, out frame);
        }
        finally
        {
            UnlockPins();
        }
    }

    /// <summary>
    /// Pins <paramref name="gref"/> of the grant table at <paramref name="table"/> (the domain's memory,
    /// frames 0..N-1 being the table); callers hoist the table's address out of their loops.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private GrantStatus AcquireLocked(byte* table, uint gref, bool readOnly, bool map, out uint frame)
    {
        frame = 0;
        // _pins has EntryCount elements: the one check covers both the guest's ref and the array.
        var pinTable = _pins;
        if (gref >= (uint)pinTable.Length) return GrantStatus.BadGntref;
        ref int pins = ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(pinTable), (nint)gref);
        uint* combo = GrantEntries.Combo(table, gref);
        // As Xen with an active entry already pinned: a copy needs no second check and CAS when the
        // entry was checked and flagged by a pin of its kind that is still held (consecutive copies of
        // one page are common). Maps always check: they are long-lived and refuse sub-page grants.
        bool alreadyPinned = !map && (readOnly ? pins != 0 : (pins & WriterMask) != 0);
        if (!alreadyPinned)
        {
            var status = SetStatus(gref, combo, readOnly, map);
            if (status != GrantStatus.Okay) return status;
        }
        frame = Volatile.Read(ref *GrantEntries.Frame(table, gref));
        // The grant table frames are not grantable: a guest must not hand out its own table.
        if (frame >= _memory.FrameCount || frame < GrantFrames)
        {
            UnpinFlags(combo, pins);
            return GrantStatus.BadPage;
        }
        pins += readOnly ? ReaderPin : ReaderPin | WriterPin;
        return GrantStatus.Okay;
    }

    /// <summary>Drops a pin taken by <see cref="Acquire"/>; clears GTF_writing/GTF_reading with the last pin of each kind.</summary>
    internal void Release(uint gref, bool readOnly)
    {
        byte* table = _memory.Base;
        LockPins();
        ReleaseLocked(table, gref, readOnly);
        UnlockPins();
    }

    /// <summary>Drops a pin on a ref <see cref="AcquireLocked"/> accepted (so in range).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void ReleaseLocked(byte* table, uint gref, bool readOnly)
    {
        ref int pins = ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_pins), (nint)gref);
        pins -= readOnly ? ReaderPin : ReaderPin | WriterPin;
        UnpinFlags(GrantEntries.Combo(table, gref), pins);
    }

    /// <summary>
    /// Xen's <c>_set_status_v1</c>: checks the entry and sets GTF_reading (and GTF_writing) by CAS. The
    /// first attempt is inlined into the pin path; an entry that changed under us goes round again in
    /// <see cref="SetStatusRetry"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private GrantStatus SetStatus(uint gref, uint* combo, bool readOnly, bool map)
    {
        uint seen = Volatile.Read(ref *combo);
        if (!StatusWanted(seen, readOnly, map, out uint wanted)) return GrantStatus.GeneralError;
        BeforeCompareExchange?.Invoke(gref);
        uint previous = Interlocked.CompareExchange(ref *combo, wanted, seen);
        return previous == seen ? GrantStatus.Okay : SetStatusRetry(gref, combo, readOnly, map, previous);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private GrantStatus SetStatusRetry(uint gref, uint* combo, bool readOnly, bool map, uint seen)
    {
        for (int retries = 1; ; retries++)
        {
            if (retries == MaxCasRetries) return GrantStatus.GeneralError; // "shared grant entry is unstable"
            if (!StatusWanted(seen, readOnly, map, out uint wanted)) return GrantStatus.GeneralError;
            BeforeCompareExchange?.Invoke(gref);
            uint previous = Interlocked.CompareExchange(ref *combo, wanted, seen);
            if (previous == seen) return GrantStatus.Okay;
            seen = previous;
        }
    }

    /// <summary>Whether the flags+domid word <paramref name="seen"/> lets us pin, and the word with our flags set.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool StatusWanted(uint seen, bool readOnly, bool map, out uint wanted)
    {
        wanted = seen | (uint)GrantFlags.Reading;
        var mask = GrantFlags.TypeMask | (map ? GrantFlags.SubPage : 0);
        var flags = GrantEntries.FlagsOf(seen);
        if ((flags & mask) != GrantFlags.PermitAccess || GrantEntries.DomidOf(seen) != LocalDomid) return false;
        if (readOnly) return true;
        if ((flags & GrantFlags.Readonly) != 0) return false;
        wanted |= (uint)GrantFlags.Writing;
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void UnpinFlags(uint* combo, int pinsAfter)
    {
        var clear = GrantFlags.Invalid;
        if ((pinsAfter & WriterMask) == 0) clear |= GrantFlags.Writing;
        if (pinsAfter == 0) clear |= GrantFlags.Reading;
        if (clear != GrantFlags.Invalid) GrantEntries.ClearFlags(combo, clear);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void LockPins()
    {
        if (Interlocked.CompareExchange(ref _pinLock, 1, 0) != 0) LockPinsSlow();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void LockPinsSlow()
    {
        var spinner = new SpinWait();
        while (Volatile.Read(ref _pinLock) != 0 || Interlocked.CompareExchange(ref _pinLock, 1, 0) != 0) spinner.SpinOnce();
    }

    private void UnlockPins() => Volatile.Write(ref _pinLock, 0);

    /// <summary>
    /// Unmaps everything still mapped (the backend is done with this domain) and the memory. The
    /// owner makes sure no copy or mapping is in use on another thread when it calls this.
    /// </summary>
    public void Dispose()
    {
        int[] handles;
        lock (_maptrackGate)
        {
            handles = Enumerable.Range(0, _maptrack.Length).Where(i => _maptrack[i].InUse).ToArray();
        }
        foreach (int h in handles) Unmap(h);
        _memory.Dispose();
    }

    private struct MapTrackEntry
    {
        public bool InUse;
        public bool ReadOnly;
        public uint Ref;
        public nint Address;
    }
}

/// <summary>A mapped grant: the page, read-only or writable as granted. Valid until unmapped.</summary>
public readonly unsafe struct GrantMapping
{
    private readonly byte* _address;

    internal GrantMapping(int handle, uint gref, bool readOnly, byte* address)
    {
        Handle = handle;
        Ref = gref;
        ReadOnly = readOnly;
        _address = address;
    }

    public int Handle { get; }

    public uint Ref { get; }

    public bool ReadOnly { get; }

    public bool IsMapped => _address != null;

    public ReadOnlySpan<byte> Page => new(_address, DomainMemory.PageSize);

    /// <summary>The page for writing; a read-only mapping has none.</summary>
    public Span<byte> WritablePage =>
        ReadOnly ? throw new InvalidOperationException("grant is mapped read-only") : new Span<byte>(_address, DomainMemory.PageSize);

    /// <summary>The page's address, for shared-ring code that needs volatile access to indices.</summary>
    public byte* Address => _address;
}
