namespace XenIo.Blkback.Images;

/// <summary>How to open one vbd's image: from the backend's xenbus keys (params, mode, device-type, discard-enable) and blkback's configuration.</summary>
public sealed record ImageOptions(string Path)
{
    /// <summary><c>mode=r</c> (xl <c>access=ro</c>).</summary>
    public bool ReadOnly { get; init; }

    /// <summary><c>device-type=cdrom</c>: always read-only, removable.</summary>
    public bool CdRom { get; init; }

    /// <summary>Bypass the host page cache (O_DIRECT); buffers must then be aligned (<see cref="AlignedBufferPool"/>).</summary>
    public bool Direct { get; init; }

    /// <summary>Logical sector size the guest sees (<c>sector-size</c>): 512 or 4096.</summary>
    public int SectorSize { get; init; } = 512;

    /// <summary><c>physical-sector-size</c>; defaults to the logical size.</summary>
    public int? PhysicalSectorSize { get; init; }

    /// <summary>xl.cfg <c>format=</c>; null or "raw" for raw.</summary>
    public string? Format { get; init; }

    /// <summary><c>discard-enable</c>: offer feature-discard (hole punching).</summary>
    public bool Discard { get; init; } = true;

    public bool EffectiveReadOnly => ReadOnly || CdRom;
}

/// <summary>An image that cannot be attached; the message says why in words an operator can act on.</summary>
public sealed class ImageOpenException(string message, Exception? inner = null) : Exception(message, inner);
