using System.Runtime.InteropServices;
using XenIo.Blkback.Interop;
using XenIo.Blkback.Requests;

namespace XenIo.Blkback.Images;

/// <summary>A span of native memory for vectored I/O (an iovec).</summary>
public readonly record struct IoBuffer(nint Address, int Length);

/// <summary>
/// A raw image file serving one vbd: positional vectored I/O (preadv/pwritev), durable flush
/// (fdatasync), barriers that drain what is in flight, discard by hole punching, and an flock that
/// keeps a writable image from being attached twice. Methods return 0 or an errno, never throw for
/// an I/O error: the caller turns that into BLKIF_RSP_ERROR.
/// </summary>
public sealed unsafe class RawImage : IDisposable
{
    /// <summary>IOV_MAX on Linux; an indirect request has at most 256 segments.</summary>
    public const int MaxIoBuffers = 1024;

    private readonly int _fd;
    // I/O holds it shared; a barrier holds it exclusive, so it waits for in-flight I/O and holds off new I/O.
    private readonly ReaderWriterLockSlim _barrier = new(LockRecursionPolicy.NoRecursion);
    private int _disposed;

    private RawImage(int fd, ImageOptions options, DiskGeometry geometry, long sizeBytes, int discardGranularity)
    {
        _fd = fd;
        Options = options;
        Geometry = geometry;
        SizeBytes = sizeBytes;
        DiscardGranularity = discardGranularity;
    }

    public ImageOptions Options { get; }

    /// <summary>What the vbd offers: sectors (512-byte units), sector size, read-only, discard.</summary>
    public DiskGeometry Geometry { get; }

    /// <summary>Bytes of the disk the guest sees (the file length rounded down to whole logical sectors).</summary>
    public long SizeBytes { get; }

    /// <summary><c>discard-granularity</c> in bytes: the host file system's block size, at least one logical sector.</summary>
    public int DiscardGranularity { get; }

    /// <summary><c>discard-alignment</c> in bytes: holes are punched from offset 0 of the file.</summary>
    public int DiscardAlignment => 0;

    public int PhysicalSectorSize => Options.PhysicalSectorSize ?? Options.SectorSize;

    /// <summary>Xen's <c>info</c> key: VDISK_CDROM 1, VDISK_REMOVABLE 2, VDISK_READONLY 4.</summary>
    public int Info => (Options.CdRom ? 1 | 2 : 0) | (Options.EffectiveReadOnly ? 4 : 0);

    /// <summary>Opens and locks an image, or throws <see cref="ImageOpenException"/> with the reason.</summary>
    public static RawImage Open(ImageOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.SectorSize is not (512 or 4096))
            throw new ImageOpenException($"{options.Path}: sector size {options.SectorSize} is not served (512 or 4096)");
        int physical = options.PhysicalSectorSize ?? options.SectorSize;
        if (physical < options.SectorSize || physical % options.SectorSize != 0 || physical > 65536)
            throw new ImageOpenException($"{options.Path}: physical sector size {physical} must be a multiple of the logical {options.SectorSize}");

        var configured = ImageFormatProbe.Parse(options.Format)
            ?? throw new ImageOpenException($"{options.Path}: unknown image format '{options.Format}'");
        if (configured != ImageFormat.Raw)
            throw new ImageOpenException($"{options.Path}: image format {ImageFormatProbe.Name(configured)} is not served yet (only raw)");
        if (Directory.Exists(options.Path))
            throw new ImageOpenException($"{options.Path}: is a directory, not an image file");
        if (!File.Exists(options.Path))
            throw new ImageOpenException($"{options.Path}: no such image file");

        var detected = DetectFormat(options.Path);
        if (detected != ImageFormat.Raw)
            throw new ImageOpenException($"{options.Path}: the file is a {ImageFormatProbe.Name(detected)} image; only raw images are served yet (convert with qemu-img convert -O raw)");

        bool ro = options.EffectiveReadOnly;
        int flags = (ro ? Libc.O_RDONLY : Libc.O_RDWR) | Libc.O_CLOEXEC | (options.Direct ? Libc.O_DIRECT : 0);
        int fd = Libc.Open(options.Path, flags, 0);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new ImageOpenException($"{options.Path}: cannot open {(ro ? "read-only" : "read-write")}{(options.Direct ? " with O_DIRECT" : "")}: {Marshal.GetPInvokeErrorMessage(errno)}");
        }
        try
        {
            // flock belongs to this open file description: a second attach (this process or another) conflicts.
            // A writer takes it exclusive, a reader shared, so rw+rw and rw+ro are refused and ro+ro allowed.
            if (Libc.Flock(fd, (ro ? Libc.LOCK_SH : Libc.LOCK_EX) | Libc.LOCK_NB) != 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                throw new ImageOpenException(errno == Libc.EWOULDBLOCK
                    ? (ro ? $"{options.Path}: already attached writable elsewhere; detach it before attaching it read-only"
                          : $"{options.Path}: already attached elsewhere; a writable image is attached to one vbd at a time")
                    : $"{options.Path}: cannot lock: {Marshal.GetPInvokeErrorMessage(errno)}");
            }
            long length = Libc.LSeek(fd, 0, Libc.SEEK_END);
            if (length < 0)
                throw new ImageOpenException($"{options.Path}: cannot size: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
            long size = length / options.SectorSize * options.SectorSize;
            if (size == 0 && !options.CdRom)
                throw new ImageOpenException($"{options.Path}: image is smaller than one {options.SectorSize}-byte sector");

            int granularity = options.SectorSize;
            Libc.StatFs st;
            if (Libc.FStatFs(fd, &st) == 0 && st.BlockSize > granularity && st.BlockSize <= 1 << 20)
                granularity = (int)st.BlockSize;

            var geometry = new DiskGeometry((ulong)size / 512, options.SectorSize, ro,
                DiscardEnabled: options.Discard && !ro, DiscardSecure: false);
            return new RawImage(fd, options, geometry, size, granularity);
        }
        catch
        {
            Libc.Close(fd);
            throw;
        }
    }

    // Read with our own descriptor: .NET's FileStream takes an flock of its own on Unix, which would
    // collide with the lock an attached image holds and hide the "already attached" answer.
    private static ImageFormat DetectFormat(string path)
    {
        int fd = Libc.Open(path, Libc.O_RDONLY | Libc.O_CLOEXEC, 0);
        if (fd < 0)
            throw new ImageOpenException($"{path}: cannot open: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        try
        {
            byte* head = stackalloc byte[ImageFormatProbe.HeaderBytes];
            byte* tail = stackalloc byte[512];
            long length = Libc.LSeek(fd, 0, Libc.SEEK_END);
            nint h = Libc.PRead(fd, head, ImageFormatProbe.HeaderBytes, 0);
            nint t = length >= 1024 ? Libc.PRead(fd, tail, 512, length - 512) : 0;
            if (h < 0 || t < 0)
                throw new ImageOpenException($"{path}: cannot read: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
            return ImageFormatProbe.Detect(new ReadOnlySpan<byte>(head, (int)h), new ReadOnlySpan<byte>(tail, (int)t));
        }
        finally
        {
            Libc.Close(fd);
        }
    }

    /// <summary>Reads <paramref name="buffers"/> in order from byte <paramref name="offset"/>; 0 or an errno.</summary>
    public int ReadV(long offset, ReadOnlySpan<IoBuffer> buffers) => Transfer(offset, buffers, write: false);

    /// <summary>Writes <paramref name="buffers"/> in order at byte <paramref name="offset"/>; 0 or an errno.</summary>
    public int WriteV(long offset, ReadOnlySpan<IoBuffer> buffers) =>
        Geometry.ReadOnly ? 30 /* EROFS */ : Transfer(offset, buffers, write: true);

    public int Read(long offset, Span<byte> buffer)
    {
        fixed (byte* p = buffer)
        {
            var one = new IoBuffer((nint)p, buffer.Length);
            return ReadV(offset, new ReadOnlySpan<IoBuffer>(in one));
        }
    }

    public int Write(long offset, ReadOnlySpan<byte> buffer)
    {
        fixed (byte* p = buffer)
        {
            var one = new IoBuffer((nint)p, buffer.Length);
            return WriteV(offset, new ReadOnlySpan<IoBuffer>(in one));
        }
    }

    /// <summary>FLUSH_DISKCACHE: everything completed so far reaches stable storage.</summary>
    public int Flush()
    {
        _barrier.EnterReadLock();
        try { return SyncData(); }
        finally { _barrier.ExitReadLock(); }
    }

    /// <summary>WRITE_BARRIER: waits for every request in flight, then syncs, before any later request starts.</summary>
    public int Barrier()
    {
        _barrier.EnterWriteLock();
        try { return SyncData(); }
        finally { _barrier.ExitWriteLock(); }
    }

    /// <summary>DISCARD: punches a hole (the file keeps its size; reads of the range return zeros).</summary>
    public int Discard(long offset, long length)
    {
        if (!Geometry.DiscardEnabled) return 95; // EOPNOTSUPP
        if (offset < 0 || length < 0 || offset > SizeBytes || length > SizeBytes - offset) return 22; // EINVAL
        if (length == 0) return 0;
        _barrier.EnterReadLock();
        try
        {
            while (true)
            {
                if (Libc.FAllocate(_fd, Libc.FALLOC_FL_PUNCH_HOLE | Libc.FALLOC_FL_KEEP_SIZE, offset, length) == 0) return 0;
                int errno = Marshal.GetLastPInvokeError();
                if (errno != Libc.EINTR) return errno;
            }
        }
        finally { _barrier.ExitReadLock(); }
    }

    private int SyncData()
    {
        while (true)
        {
            if (Libc.FDataSync(_fd) == 0) return 0;
            int errno = Marshal.GetLastPInvokeError();
            if (errno != Libc.EINTR) return errno;
        }
    }

    private int Transfer(long offset, ReadOnlySpan<IoBuffer> buffers, bool write)
    {
        if (buffers.Length == 0) return 0;
        if (buffers.Length > MaxIoBuffers) return 22; // EINVAL
        long total = 0;
        foreach (var b in buffers)
        {
            if (b.Length < 0) return 22;
            total += b.Length;
        }
        if (offset < 0 || offset > SizeBytes || total > SizeBytes - offset) return 22;

        var iov = stackalloc Libc.IoVec[buffers.Length];
        for (int i = 0; i < buffers.Length; i++)
            iov[i] = new Libc.IoVec { Base = (void*)buffers[i].Address, Length = (nuint)buffers[i].Length };

        _barrier.EnterReadLock();
        try
        {
            int index = 0;
            int count = buffers.Length;
            while (total > 0)
            {
                nint n = write
                    ? Libc.PWriteV(_fd, iov + index, Math.Min(count - index, MaxIoBuffers), offset)
                    : Libc.PReadV(_fd, iov + index, Math.Min(count - index, MaxIoBuffers), offset);
                if (n < 0)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == Libc.EINTR) continue;
                    return errno;
                }
                if (n == 0) return 5; // EIO: the file shrank under us
                offset += n;
                total -= n;
                // Short transfer: step past what was done and go on with the rest of the vector.
                while (n > 0 && index < count)
                {
                    if ((nint)iov[index].Length <= n)
                    {
                        n -= (nint)iov[index].Length;
                        index++;
                    }
                    else
                    {
                        iov[index].Base = (byte*)iov[index].Base + n;
                        iov[index].Length -= (nuint)n;
                        n = 0;
                    }
                }
            }
            return 0;
        }
        finally { _barrier.ExitReadLock(); }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        Libc.Close(_fd); // releases the flock
        _barrier.Dispose();
    }
}
