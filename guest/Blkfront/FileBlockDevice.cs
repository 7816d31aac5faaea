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

    [ThreadStatic] private static BounceBuffer? t_bounce;

    /// <param name="direct">Open with O_DIRECT (no host page cache), as blkback's O_DIRECT mode; buffers that are not
    /// page aligned then go through a per-thread aligned copy.</param>
    public FileBlockDevice(string path, int sectorSize = 512, bool readOnly = false, bool direct = false)
    {
        if (sectorSize is not (512 or 4096)) throw new ArgumentOutOfRangeException(nameof(sectorSize));
        if (direct)
        {
            int fd = Libc.Fuse.Open(path, (readOnly ? Libc.Fuse.O_RDONLY : Libc.Fuse.O_RDWR) | Libc.Fuse.O_CLOEXEC | Libc.Fuse.O_DIRECT, 0);
            if (fd < 0) throw new IOException($"{path}: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
            _handle = new SafeFileHandle(fd, ownsHandle: true);
        }
        else
        {
            // FileShare is how .NET picks its advisory lock on Unix; blkback's own lock is the one that matters.
            _handle = File.OpenHandle(path, FileMode.Open, readOnly ? FileAccess.Read : FileAccess.ReadWrite, FileShare.ReadWrite);
        }
        Direct = direct;
        long length = RandomAccess.GetLength(_handle);
        SizeBytes = length / sectorSize * sectorSize;
        SectorSize = sectorSize;
        ReadOnly = readOnly;
    }

    public long SizeBytes { get; }
    public int SectorSize { get; }
    public bool ReadOnly { get; }
    public bool SupportsDiscard => !ReadOnly;
    public bool Direct { get; }

    public ValueTask ReadAsync(ulong sector, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        long offset = CheckRange(sector, buffer.Length);
        if (Direct && !IsAligned(buffer.Span))
        {
            var bounce = Bounce(buffer.Length);
            ReadAll(bounce[..buffer.Length], offset);
            bounce[..buffer.Length].CopyTo(buffer.Span);
        }
        else
        {
            ReadAll(buffer.Span, offset);
        }
        return ValueTask.CompletedTask;
    }

    public ValueTask WriteAsync(ulong sector, ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (ReadOnly) throw new BlockDeviceException(Libc.Fuse.EROFS, "read-only disk");
        long offset = CheckRange(sector, buffer.Length);
        if (Direct && !IsAligned(buffer.Span))
        {
            var bounce = Bounce(buffer.Length);
            buffer.Span.CopyTo(bounce);
            RandomAccess.Write(_handle, bounce[..buffer.Length], offset);
        }
        else
        {
            RandomAccess.Write(_handle, buffer.Span, offset);
        }
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

    private void ReadAll(Span<byte> span, long offset)
    {
        while (!span.IsEmpty)
        {
            int n = RandomAccess.Read(_handle, span, offset);
            if (n == 0) throw new BlockDeviceException(Libc.Fuse.EIO, "image shrank under the disk");
            span = span[n..];
            offset += n;
        }
    }

    private static unsafe bool IsAligned(ReadOnlySpan<byte> span)
    {
        fixed (byte* p = span) return ((nint)p & 4095) == 0;
    }

    private static Span<byte> Bounce(int length)
    {
        var b = t_bounce;
        if (b is null || b.Length < length)
        {
            b?.Dispose();
            t_bounce = b = new BounceBuffer(Math.Max(length, 1 << 20));
        }
        return b.Span;
    }

    /// <summary>One page-aligned copy buffer per thread (the FUSE workers are long-lived), never per request.</summary>
    private sealed unsafe class BounceBuffer(int length) : IDisposable
    {
        private byte* _p = (byte*)NativeMemory.AlignedAlloc((nuint)length, 4096);
        public int Length { get; } = length;
        public Span<byte> Span => new(_p, Length);

        public void Dispose()
        {
            if (_p == null) return;
            NativeMemory.AlignedFree(_p);
            _p = null;
        }

        ~BounceBuffer() => Dispose();
    }

    private long CheckRange(ulong sector, long length)
    {
        if (sector > (ulong)SizeBytes / 512 || length < 0 || (ulong)length > (ulong)SizeBytes - sector * 512)
            throw new BlockDeviceException(Libc.Fuse.EINVAL, "outside the disk");
        return (long)(sector * 512);
    }

    public void Dispose() => _handle.Dispose();
}
