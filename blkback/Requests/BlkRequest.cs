using XenIo.Hypervisor.Abi;

namespace XenIo.Blkback.Requests;

/// <summary>What a validated request asks the image backend to do.</summary>
public enum BlkIoKind : byte
{
    Read,
    Write,
    /// <summary>FLUSH_DISKCACHE: write the segments (if any), then make everything durable.</summary>
    Flush,
    /// <summary>WRITE_BARRIER: drain what is in flight, write the segments (if any), make it durable.</summary>
    Barrier,
    Discard,
}

/// <summary>One validated segment: sectors <see cref="FirstSect"/>..<see cref="LastSect"/> of the granted page <see cref="Gref"/>.</summary>
public readonly record struct BlkSegment(uint Gref, byte FirstSect, byte LastSect)
{
    /// <summary>Byte offset of the data inside the granted page.</summary>
    public int PageOffset => FirstSect * BlkifLimits.SectorSize;

    public int Length => (LastSect - FirstSect + 1) * BlkifLimits.SectorSize;
}

/// <summary>
/// A request that passed validation: every field is from the backend's private copy (XSA-155) and
/// the byte range [<see cref="Offset"/>, <see cref="Offset"/> + <see cref="Length"/>) lies inside the disk.
/// The segments themselves are written into the caller's span (no allocation per request).
/// </summary>
public readonly record struct BlkRequest(
    ulong Id,
    BlkifOperation ResponseOperation,
    BlkIoKind Kind,
    ulong Offset,
    ulong Length,
    int SegmentCount,
    bool Secure = false)
{
    public BlkifResponse Response(short status) => BlkifResponse.Create(Id, ResponseOperation, status);
}

/// <summary>Header of an INDIRECT request that passed the first check; its segment pages still have to be copied.</summary>
public readonly record struct IndirectPlan(
    ulong Id,
    BlkifOperation IndirectOp,
    ulong SectorNumber,
    int NrSegments,
    int IndirectPages);
