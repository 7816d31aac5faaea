using System.Runtime.InteropServices;

namespace XenIo.Hypervisor.Interop;

/// <summary>
/// glibc calls the hypervisor core needs and .NET does not expose (memfd and seals, mmap, hole
/// punching, SCM_RIGHTS, epoll). Layouts are Linux x86_64/aarch64 (LP64); constants are from the
/// kernel's uapi headers. Everything here is allocation-free per call.
/// </summary>
internal static unsafe partial class Libc
{
    public const int EINTR = 4;
    public const int EAGAIN = 11;
    public const int EPIPE = 32;

    // memfd_create(2), fcntl(2) seals
    public const uint MFD_CLOEXEC = 0x1;
    public const uint MFD_ALLOW_SEALING = 0x2;
    public const int F_DUPFD_CLOEXEC = 1030;
    public const int F_ADD_SEALS = 1033;
    public const int F_GET_SEALS = 1034;
    public const int F_GETFD = 1;
    public const int F_SETFD = 2;
    public const int FD_CLOEXEC = 1;
    public const int F_SEAL_SEAL = 0x1;
    public const int F_SEAL_SHRINK = 0x2;
    public const int F_SEAL_GROW = 0x4;

    // mmap(2)
    public const int PROT_READ = 0x1;
    public const int PROT_WRITE = 0x2;
    public const int MAP_SHARED = 0x1;
    public static readonly nint MAP_FAILED = -1;

    // fallocate(2)
    public const int FALLOC_FL_KEEP_SIZE = 0x1;
    public const int FALLOC_FL_PUNCH_HOLE = 0x2;

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int memfd_create(string name, uint flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int fcntl(int fd, int cmd, int arg);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int ftruncate(int fd, long length);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint mmap(nint addr, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int munmap(nint addr, nuint length);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int fallocate(int fd, int mode, long offset, long len);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int close(int fd);

    public const int SEEK_DATA = 3;

    [LibraryImport("libc", SetLastError = true)]
    public static partial long lseek(int fd, long offset, int whence);

    /// <summary>fstat(2) into a raw <c>struct stat</c> (144 bytes on x86_64, 128 on aarch64).</summary>
    [LibraryImport("libc", SetLastError = true)]
    public static partial int fstat(int fd, byte* statBuffer);

    public const int StatBufferSize = 144;
    // Same offsets on x86_64 and the generic (aarch64) layout.
    public const int StatSizeOffset = 48;
    public const int StatBlocksOffset = 64;

    /// <summary>The file's size and allocated 512-byte blocks, or false with errno set.</summary>
    public static bool TryFstat(int fd, out long size, out long blocks512)
    {
        byte* buffer = stackalloc byte[StatBufferSize];
        if (fstat(fd, buffer) != 0)
        {
            size = blocks512 = 0;
            return false;
        }
        size = *(long*)(buffer + StatSizeOffset);
        blocks512 = *(long*)(buffer + StatBlocksOffset);
        return true;
    }

    public static int Errno => Marshal.GetLastPInvokeError();

    public static string Describe(int errno) => $"errno {errno} ({Marshal.GetPInvokeErrorMessage(errno)})";
}
