using System.Runtime.InteropServices;
using XenIo.Hypervisor.Abi;

namespace XenIo.Blkback.Requests;

/// <summary>
/// Checks blkif requests before any I/O, as Linux's xen-blkback (dispatch_rw_block_io,
/// xen_vbd_translate, dispatch_discard_io, xen_blkbk_parse_indirect) does. Pure: the caller copies
/// the ring slot once (<see cref="CopySlot"/>, XSA-155) and uses only the copy afterwards. Every
/// method returns a BLKIF_RSP_* status: <see cref="BlkifStatus.Okay"/> means the out value is valid.
/// </summary>
public static class BlkifRequestValidator
{
    private const int SectorShift = 9;

    /// <summary>Copies one 112-byte ring slot out of shared memory; only the copy is looked at again.</summary>
    public static BlkifRequest CopySlot(ReadOnlySpan<byte> sharedSlot)
    {
        if (sharedSlot.Length < BlkifLimits.RequestSlotSize)
            throw new ArgumentException("a blkif ring slot is 112 bytes", nameof(sharedSlot));
        // One read of the whole slot: a guest rewriting it meanwhile cannot make checks and use disagree.
        return MemoryMarshal.Read<BlkifRequest>(sharedSlot);
    }

    /// <summary>The slot copy seen as a discard request (same bytes, other layout).</summary>
    public static BlkifRequestDiscard AsDiscard(in BlkifRequest copy) =>
        MemoryMarshal.Read<BlkifRequestDiscard>(MemoryMarshal.AsBytes(new ReadOnlySpan<BlkifRequest>(in copy)));

    /// <summary>The slot copy seen as an indirect request.</summary>
    public static BlkifRequestIndirect AsIndirect(in BlkifRequest copy) =>
        MemoryMarshal.Read<BlkifRequestIndirect>(MemoryMarshal.AsBytes(new ReadOnlySpan<BlkifRequest>(in copy)));

    /// <summary>
    /// Validates a READ, WRITE, WRITE_BARRIER or FLUSH_DISKCACHE request; answers every other operation
    /// except DISCARD and INDIRECT (which have their own layouts) with EOPNOTSUPP, as Linux does.
    /// </summary>
    public static short Validate(in BlkifRequest req, in DiskGeometry disk, Span<BlkSegment> segments, out BlkRequest result)
    {
        result = default;
        BlkIoKind kind;
        switch (req.Operation)
        {
            case BlkifOperation.Read: kind = BlkIoKind.Read; break;
            case BlkifOperation.Write: kind = BlkIoKind.Write; break;
            case BlkifOperation.FlushDiskCache: kind = BlkIoKind.Flush; break;
            case BlkifOperation.WriteBarrier: kind = BlkIoKind.Barrier; break;
            case BlkifOperation.Discard:
                return ValidateDiscard(AsDiscard(req), disk, out result);
            case BlkifOperation.Indirect:
                // Needs the indirect pages: callers go through ValidateIndirectHeader.
                return BlkifStatus.Error;
            default:
                return BlkifStatus.EOpNotSupp;
        }

        int nseg = req.NrSegments;
        bool dataless = kind is BlkIoKind.Flush or BlkIoKind.Barrier;
        if (nseg > BlkifLimits.MaxSegmentsPerRequest || (nseg == 0 && !dataless))
            return BlkifStatus.Error;
        if (segments.Length < nseg)
            throw new ArgumentException("segment span shorter than 11", nameof(segments));

        var copied = MemoryMarshal.CreateReadOnlySpan(in req.Seg[0], nseg);
        short status = ValidateSegments(copied, req.SectorNumber, kind, disk, segments, out ulong bytes);
        if (status != BlkifStatus.Okay) return status;

        // A flush or barrier without data has no range: do not carry the guest's sector number on.
        ulong offset = nseg == 0 ? 0 : req.SectorNumber << SectorShift;
        result = new BlkRequest(req.Id, req.Operation, kind, offset, bytes, nseg);
        return BlkifStatus.Okay;
    }

    /// <summary>Validates a DISCARD request (the 32-byte layout).</summary>
    public static short ValidateDiscard(in BlkifRequestDiscard req, in DiskGeometry disk, out BlkRequest result)
    {
        result = default;
        if (!disk.DiscardEnabled) return BlkifStatus.EOpNotSupp;
        bool secure = (req.Flag & BlkifRequestDiscard.FlagSecure) != 0;
        if (secure && !disk.DiscardSecure) return BlkifStatus.EOpNotSupp;
        if ((req.Flag & ~BlkifRequestDiscard.FlagSecure) != 0) return BlkifStatus.Error;
        if (disk.ReadOnly) return BlkifStatus.Error;
        if (!InsideDisk(req.SectorNumber, req.NrSectors, disk)) return BlkifStatus.Error;
        ulong align = (ulong)disk.SectorsPerLogicalBlock;
        if ((req.SectorNumber | req.NrSectors) % align != 0) return BlkifStatus.Error;
        result = new BlkRequest(req.Id, BlkifOperation.Discard, BlkIoKind.Discard,
            req.SectorNumber << SectorShift, req.NrSectors << SectorShift, 0, secure);
        return BlkifStatus.Okay;
    }

    /// <summary>
    /// First step of an INDIRECT request: checks indirect_op, nr_segments and the number of
    /// indirect pages. The caller then copies <see cref="IndirectPlan.NrSegments"/> segments out of
    /// the granted pages named by <c>indirect_grefs[0..IndirectPages)</c> and calls
    /// <see cref="ValidateIndirectSegments"/>.
    /// </summary>
    public static short ValidateIndirectHeader(in BlkifRequestIndirect req, in DiskGeometry disk, out IndirectPlan plan)
    {
        plan = default;
        if (req.Operation != BlkifOperation.Indirect) return BlkifStatus.Error;
        if (disk.MaxIndirectSegments == 0) return BlkifStatus.EOpNotSupp;
        if (req.IndirectOp is not (BlkifOperation.Read or BlkifOperation.Write)) return BlkifStatus.Error;
        int nseg = req.NrSegments;
        if (nseg < 1 || nseg > disk.MaxIndirectSegments) return BlkifStatus.Error;
        int pages = (nseg + BlkifLimits.SegmentsPerIndirectFrame - 1) / BlkifLimits.SegmentsPerIndirectFrame;
        if (pages > BlkifLimits.MaxIndirectPagesPerRequest) return BlkifStatus.Error;
        if (req.IndirectOp == BlkifOperation.Write && disk.ReadOnly) return BlkifStatus.Error;
        plan = new IndirectPlan(req.Id, req.IndirectOp, req.SectorNumber, nseg, pages);
        return BlkifStatus.Okay;
    }

    /// <summary>Second step of an INDIRECT request: the segments, already copied out of the indirect pages.</summary>
    public static short ValidateIndirectSegments(in IndirectPlan plan, ReadOnlySpan<BlkifRequestSegment> copied,
        in DiskGeometry disk, Span<BlkSegment> segments, out BlkRequest result)
    {
        result = default;
        if (copied.Length != plan.NrSegments || plan.NrSegments < 1 || plan.NrSegments > disk.MaxIndirectSegments)
            return BlkifStatus.Error;
        if (segments.Length < copied.Length)
            throw new ArgumentException("segment span shorter than nr_segments", nameof(segments));
        var kind = plan.IndirectOp == BlkifOperation.Write ? BlkIoKind.Write : BlkIoKind.Read;
        short status = ValidateSegments(copied, plan.SectorNumber, kind, disk, segments, out ulong bytes);
        if (status != BlkifStatus.Okay) return status;
        // Blkfront matches responses to an INDIRECT request by indirect_op, as Linux's blkback answers.
        result = new BlkRequest(plan.Id, plan.IndirectOp, kind, plan.SectorNumber << SectorShift, bytes, copied.Length);
        return BlkifStatus.Okay;
    }

    /// <summary>
    /// Copies segments out of one mapped indirect page (512 per page): <paramref name="destination"/>
    /// receives <c>destination.Length</c> entries starting at entry <paramref name="firstInPage"/>.
    /// Copy once, then validate the copy with <see cref="ValidateIndirectSegments"/> (XSA-155).
    /// </summary>
    public static void CopyIndirectSegments(ReadOnlySpan<byte> indirectPage, int firstInPage, Span<BlkifRequestSegment> destination)
    {
        var all = MemoryMarshal.Cast<byte, BlkifRequestSegment>(indirectPage);
        if ((uint)firstInPage > (uint)all.Length || destination.Length > all.Length - firstInPage)
            throw new ArgumentOutOfRangeException(nameof(firstInPage), "segments past the end of the indirect page");
        all.Slice(firstInPage, destination.Length).CopyTo(destination);
    }

    /// <summary>Builds the response for a request that failed validation (every padding byte zero, XSA-216).</summary>
    public static BlkifResponse ErrorResponse(in BlkifRequest copy, short status)
    {
        var op = copy.Operation == BlkifOperation.Indirect ? AsIndirect(copy).IndirectOp : copy.Operation;
        return BlkifResponse.Create(copy.Id, op, status);
    }

    private static short ValidateSegments(ReadOnlySpan<BlkifRequestSegment> copied, ulong sectorNumber, BlkIoKind kind,
        in DiskGeometry disk, Span<BlkSegment> segments, out ulong bytes)
    {
        bytes = 0;
        if (disk.ReadOnly && kind != BlkIoKind.Read && (copied.Length > 0 || kind == BlkIoKind.Barrier))
            return BlkifStatus.Error;
        // A flush or barrier without data names no range (Linux skips the check when nr_sects is 0).
        if (copied.Length == 0) return BlkifStatus.Okay;
        uint align = (uint)disk.SectorsPerLogicalBlock;
        if (sectorNumber % align != 0) return BlkifStatus.Error;

        ulong sectors = 0;
        for (int i = 0; i < copied.Length; i++)
        {
            var s = copied[i];
            if (s.LastSect >= BlkifLimits.SectorsPerPage || s.FirstSect > s.LastSect) return BlkifStatus.Error;
            uint nsec = (uint)(s.LastSect - s.FirstSect + 1);
            // With 4096-byte sectors each segment must be whole logical blocks at an aligned page offset
            // (Linux: "Misaligned I/O request"), so O_DIRECT never sees a partial block.
            if ((s.FirstSect | nsec) % align != 0) return BlkifStatus.Error;
            segments[i] = new BlkSegment(s.Gref, s.FirstSect, s.LastSect);
            sectors += nsec;
        }
        if (!InsideDisk(sectorNumber, sectors, disk)) return BlkifStatus.Error;
        bytes = sectors << SectorShift;
        return BlkifStatus.Okay;
    }

    /// <summary>[sector, sector + count) lies inside the disk, with no overflow whatever the guest sent.</summary>
    private static bool InsideDisk(ulong sector, ulong count, in DiskGeometry disk) =>
        sector <= disk.Sectors && count <= disk.Sectors - sector;
}
