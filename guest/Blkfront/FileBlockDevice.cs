using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using XenIo.Guest.Interop;

namespace XenIo.Guest.Blkfront;

/// <summary>
/// A disk that is a plain file: for tests, benchmarks and <c>isolation=userns</c> guests, where the
/// agent cannot reach blkback's rings through a loop device anyway. Positional I/O, so it is safe
/// from many threads; completes synchronously.
/// </summary>
public sealed class FileBlockDevice : IBlockDevice, IDisposable
{
    private readonly SafeFileHandle _handle;

    public FileBlockDevice(string path, int sectorSize = 512, bool readOnly = false)
    {
        if (sectorSize is not (512 or 4096)) throw new ArgumentOutOfRangeException(nameof(sectorSize));
        // FileShare is how .NET picks its advisory lock on Unix; blkback's own lock is the one that matters.
        _handle = File.OpenHandle(path, FileMode.Open, readOnly ? FileAccess.Read : FileAccess.ReadWrite, FileShare.ReadWrite);
        long length = RandomAccess.GetLength(_handle);
        SizeBytes = length / sectorSize * sectorSize;
        SectorSize = sectorSize;
        ReadOnly = readOnly;
    }

    public long SizeBytes { get; }
    public int SectorSize { get; }
    public bool ReadOnly { get; }
    public bool SupportsDiscard => !ReadOnly;

    public ValueTask ReadAsync(ulong sector, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        long offset = CheckRange(sector, buffer.Length);
        var span = buffer.Span;
        while (!span.IsEmpty)
        {
            int n = RandomAccess.Read(_handle, span, offset);
            if (n == 0) throw new BlockDeviceException(Libc.Fuse.EIO, "image shrank under the disk");
            span = span[n..];
            offset += n;
        }
        return ValueTask.CompletedTask;
    }

    public ValueTask WriteAsync(ulong sector, ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (ReadOnly) throw new BlockDeviceException(Libc.Fuse.EROFS, "read-only disk");
        long offset = CheckRange(sector, buffer.Length);
        RandomAccess.Write(_handle, buffer.Span, offset);
        return ValueTask.CompletedTask;
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        if (Libc.Fuse.FDataSync(_handle.DangerousGetHandle()) != 0)
            throw new BlockDeviceException(Marshal.GetLastPInvokeError(), "fdatasync failed");
        return ValueTask.CompletedTask;
    }

    public ValueTask DiscardAsync(ulong sector, ulong sectorCount, CancellationToken cancellationToken = default)
    {
        if (!SupportsDiscard) throw new BlockDeviceException(Libc.Fuse.EOPNOTSUPP, "discard not supported");
        if (sectorCount > (ulong)SizeBytes / 512) throw new BlockDeviceException(Libc.Fuse.EINVAL, "discard past the end");
        long offset = CheckRange(sector, (long)sectorCount * 512);
        if (sectorCount == 0) return ValueTask.CompletedTask;
        if (Libc.Fuse.FAllocate(_handle.DangerousGetHandle(), Libc.Fuse.FALLOC_FL_PUNCH_HOLE | Libc.Fuse.FALLOC_FL_KEEP_SIZE, offset, (long)sectorCount * 512) != 0)
            throw new BlockDeviceException(Marshal.GetLastPInvokeError(), "hole punching failed");
        return ValueTask.CompletedTask;
    }

    private long CheckRange(ulong sector, long length)
    {
        if (sector > (ulong)SizeBytes / 512 || length < 0 || (ulong)length > (ulong)SizeBytes - sector * 512)
            throw new BlockDeviceException(Libc.Fuse.EINVAL, "outside the disk");
        return (long)(sector * 512);
    }

    public void Dispose() => _handle.Dispose();
}
