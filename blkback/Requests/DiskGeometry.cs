namespace XenIo.Blkback.Requests;

/// <summary>
/// What request validation needs to know about one vbd. <see cref="Sectors"/> is in Xen's 512-byte
/// units (the <c>sectors</c> xenbus key), whatever <see cref="SectorSize"/> (the logical sector size,
/// <c>sector-size</c>) is.
/// </summary>
public readonly record struct DiskGeometry(
    ulong Sectors,
    int SectorSize = 512,
    bool ReadOnly = false,
    bool DiscardEnabled = false,
    bool DiscardSecure = false,
    int MaxIndirectSegments = DiskGeometry.DefaultMaxIndirectSegments)
{
    /// <summary>What blkback offers as <c>feature-max-indirect-segments</c>.</summary>
    public const int DefaultMaxIndirectSegments = 256;

    /// <summary>Logical sector size in 512-byte units (1 or 8): request starts and lengths must be multiples of it.</summary>
    public int SectorsPerLogicalBlock => SectorSize / 512;

    public ulong SizeBytes => Sectors * 512UL;

    /// <summary>Checks the geometry itself (from configuration, not from a guest).</summary>
    public void EnsureValid()
    {
        if (SectorSize is not (512 or 4096))
            throw new ArgumentOutOfRangeException(nameof(SectorSize), SectorSize, "sector size must be 512 or 4096");
        if (MaxIndirectSegments is < 0 or > Hypervisor.Abi.BlkifLimits.SegmentsPerIndirectFrame * Hypervisor.Abi.BlkifLimits.MaxIndirectPagesPerRequest)
            throw new ArgumentOutOfRangeException(nameof(MaxIndirectSegments), MaxIndirectSegments, "at most 4096 indirect segments");
        if (Sectors > ulong.MaxValue / 512)
            throw new ArgumentOutOfRangeException(nameof(Sectors), Sectors, "disk too large");
    }
}
