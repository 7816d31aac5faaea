using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using XenIo.Hypervisor.Interop;

namespace XenIo.Hypervisor.Memory;

/// <summary>
/// A domain's pseudo-physical memory: a memfd sealed against shrinking and growing, mapped
/// <c>MAP_SHARED</c>. hyperd creates it (<see cref="Create"/>); the guest and dom0 backends map the
/// descriptor they were handed (<see cref="Map"/>). Frame numbers are guest-controlled, so every
/// accessor that takes one checks it against <see cref="FrameCount"/>.
/// </summary>
/// <remarks>
/// The seals matter: a file that its guest could truncate would SIGBUS every backend mapping it, so
/// <see cref="Map"/> refuses a descriptor without <c>F_SEAL_SHRINK</c>. Nothing about a domain is
/// reachable by path.
/// </remarks>
public sealed unsafe class DomainMemory : IDisposable
{
    public const int PageSize = 4096;
    public const int PageShift = 12;

    /// <summary>Largest domain we accept (1 TiB): bounds every size computed from a descriptor.</summary>
    public const long MaxBytes = 1L << 40;

    private const int RequiredSeals = Libc.F_SEAL_SHRINK | Libc.F_SEAL_GROW;

    private readonly SafeFileHandle _handle;
    private byte* _base;

    private DomainMemory(SafeFileHandle handle, byte* mapping, uint frameCount, bool writable)
    {
        _handle = handle;
        _base = mapping;
        FrameCount = frameCount;
        Writable = writable;
    }

    /// <summary>Pages in the domain; frames 0..FrameCount-1 exist.</summary>
    public uint FrameCount { get; }

    public long Length => (long)FrameCount << PageShift;

    public bool Writable { get; }

    /// <summary>The memfd. Hand it to another process with SCM_RIGHTS; it stays owned by this object.</summary>
    public SafeFileHandle Handle => _handle;

    internal int Fd => (int)_handle.DangerousGetHandle();

    /// <summary>
    /// Creates a domain's memory: <c>memfd_create(MFD_CLOEXEC|MFD_ALLOW_SEALING)</c> sized to
    /// <paramref name="frames"/> pages, sealed F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_SEAL, and mapped.
    /// Pages are allocated lazily by the kernel unless <paramref name="preallocate"/>.
    /// </summary>
    public static DomainMemory Create(string name, uint frames, bool preallocate = false)
    {
        if (frames == 0 || (long)frames << PageShift > MaxBytes)
            throw new ArgumentOutOfRangeException(nameof(frames), frames, "a domain has 1 page to 1 TiB");
        int fd = Libc.memfd_create(name, Libc.MFD_CLOEXEC | Libc.MFD_ALLOW_SEALING);
        if (fd < 0) throw Failure("memfd_create", Libc.Errno);
        var handle = new SafeFileHandle(fd, ownsHandle: true);
        try
        {
            long bytes = (long)frames << PageShift;
            if (Libc.ftruncate(fd, bytes) != 0) throw Failure("ftruncate", Libc.Errno);
            if (preallocate && Libc.fallocate(fd, 0, 0, bytes) != 0) throw Failure("fallocate", Libc.Errno);
            if (Libc.fcntl(fd, Libc.F_ADD_SEALS, Libc.F_SEAL_SHRINK | Libc.F_SEAL_GROW | Libc.F_SEAL_SEAL) != 0)
                throw Failure("F_ADD_SEALS", Libc.Errno);
            return new DomainMemory(handle, MapOrThrow(fd, bytes, writable: true), frames, writable: true);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Maps a domain memory descriptor received from hyperd. Takes ownership of <paramref name="handle"/>.
    /// Refuses a descriptor that is not sealed against shrinking and growing, or whose size is not whole pages.
    /// </summary>
    public static DomainMemory Map(SafeFileHandle handle, bool writable = true)
    {
        try
        {
            int fd = (int)handle.DangerousGetHandle();
            int seals = Libc.fcntl(fd, Libc.F_GET_SEALS, 0);
            if (seals < 0) throw Failure("F_GET_SEALS", Libc.Errno);
            if ((seals & RequiredSeals) != RequiredSeals)
                throw new InvalidDataException("domain memory is not sealed against shrink and grow; refusing to map it");
            if (!Libc.TryFstat(fd, out long size, out _)) throw Failure("fstat", Libc.Errno);
            if (size <= 0 || size > MaxBytes || (size & (PageSize - 1)) != 0)
                throw new InvalidDataException($"domain memory size {size} is not a whole number of pages up to 1 TiB");
            return new DomainMemory(handle, MapOrThrow(fd, size, writable), (uint)(size >> PageShift), writable);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>Maps a raw descriptor number (inherited or received) and takes ownership of it.</summary>
    public static DomainMemory Map(int fd, bool writable = true) => Map(new SafeFileHandle(fd, ownsHandle: true), writable);

    /// <summary>A new close-on-exec descriptor for the same memory (to map it again or hand it on).</summary>
    public SafeFileHandle Duplicate() => DuplicateHandle(_handle);

    /// <summary>dup(2) that holds a reference meanwhile, so a concurrent Dispose cannot make us duplicate a reused number.</summary>
    internal static SafeFileHandle DuplicateHandle(SafeHandle handle)
    {
        bool added = false;
        handle.DangerousAddRef(ref added);
        try
        {
            int fd = Libc.fcntl((int)handle.DangerousGetHandle(), Libc.F_DUPFD_CLOEXEC, 0);
            return fd >= 0 ? new SafeFileHandle(fd, ownsHandle: true) : throw Failure("F_DUPFD_CLOEXEC", Libc.Errno);
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
    }

    public bool Contains(uint frame) => frame < FrameCount;

    /// <summary>The page of a frame the caller has already checked (<see cref="Contains"/>).</summary>
    internal byte* PagePointer(uint frame) => PageAt(Base, frame);

    /// <summary>The same from a base address a caller holds across a loop.</summary>
    internal static byte* PageAt(byte* memoryBase, uint frame) => memoryBase + ((nint)frame << PageShift);

    internal byte* Base => _base != null ? _base : throw new ObjectDisposedException(nameof(DomainMemory));

    /// <summary>The page of a trusted frame number; throws if it is outside the domain.</summary>
    public Span<byte> Page(uint frame)
    {
        if (frame >= FrameCount) throw new ArgumentOutOfRangeException(nameof(frame), frame, $"the domain has {FrameCount} frames");
        return new Span<byte>(PagePointer(frame), PageSize);
    }

    /// <summary>The page of an untrusted frame number, or false if it is outside the domain.</summary>
    public bool TryGetPage(uint frame, out Span<byte> page)
    {
        if (frame >= FrameCount)
        {
            page = default;
            return false;
        }
        page = new Span<byte>(PagePointer(frame), PageSize);
        return true;
    }

    /// <summary>Bytes the kernel has allocated to the memfd (<c>st_blocks</c> × 512): what hole punching gives back.</summary>
    public long AllocatedBytes => Libc.TryFstat(Fd, out _, out long blocks) ? blocks * 512 : throw Failure("fstat", Libc.Errno);

    /// <summary>Gives a frame's backing memory back to the host; the page reads as zeros afterwards.</summary>
    internal int PunchHole(uint frame) =>
        Libc.fallocate(Fd, Libc.FALLOC_FL_PUNCH_HOLE | Libc.FALLOC_FL_KEEP_SIZE, (long)frame << PageShift, PageSize) == 0 ? 0 : Libc.Errno;

    /// <summary>Whether the kernel holds memory for a frame (SEEK_DATA lands on it).</summary>
    internal bool IsBacked(uint frame)
    {
        long offset = (long)frame << PageShift;
        return Libc.lseek(Fd, offset, Libc.SEEK_DATA) == offset;
    }

    /// <summary>Allocates a frame's backing memory again (zero-filled, as after a hole punch).</summary>
    internal int Allocate(uint frame) =>
        Libc.fallocate(Fd, 0, (long)frame << PageShift, PageSize) == 0 ? 0 : Libc.Errno;

    public void Dispose()
    {
        if (_base != null)
        {
            Libc.munmap((nint)_base, (nuint)Length);
            _base = null;
        }
        _handle.Dispose();
    }

    private static byte* MapOrThrow(int fd, long bytes, bool writable)
    {
        int prot = Libc.PROT_READ | (writable ? Libc.PROT_WRITE : 0);
        nint address = Libc.mmap(0, (nuint)bytes, prot, Libc.MAP_SHARED, fd, 0);
        if (address == Libc.MAP_FAILED) throw Failure("mmap", Libc.Errno);
        return (byte*)address;
    }

    internal static IOException Failure(string call, int errno) => new($"{call} failed: {Libc.Describe(errno)}");
}
