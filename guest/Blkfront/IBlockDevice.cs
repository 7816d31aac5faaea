namespace XenIo.Guest.Blkfront;

/// <summary>
/// A disk as blkfront serves it to the guest's tools: I/O at a sector offset (512-byte units, as
/// blkif's sector_number), lengths in whole logical sectors. Blkfront's ring client implements it;
/// <see cref="FileBlockDevice"/> does for tests and for <c>isolation=userns</c>. Implementations are
/// called from several threads at once.
/// </summary>
public interface IBlockDevice
{
    /// <summary>Size in bytes (a multiple of <see cref="SectorSize"/>).</summary>
    long SizeBytes { get; }

    /// <summary>Logical sector size: 512 or 4096.</summary>
    int SectorSize { get; }

    bool ReadOnly { get; }

    bool SupportsDiscard { get; }

    /// <summary>Fills <paramref name="buffer"/> from 512-byte sector <paramref name="sector"/>.</summary>
    ValueTask ReadAsync(ulong sector, Memory<byte> buffer, CancellationToken cancellationToken = default);

    ValueTask WriteAsync(ulong sector, ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default);

    /// <summary>Completes when every write acknowledged before the call is durable.</summary>
    ValueTask FlushAsync(CancellationToken cancellationToken = default);

    /// <summary>The range may read back as zeros or as before; it no longer needs to be stored.</summary>
    ValueTask DiscardAsync(ulong sector, ulong sectorCount, CancellationToken cancellationToken = default);
}

/// <summary>An I/O error from the device, carrying the errno the guest's tools will see.</summary>
public sealed class BlockDeviceException(int errno, string message) : IOException(message)
{
    public int Errno { get; } = errno;
}
