using System.Runtime.InteropServices;

namespace XenIo.Blkback.Interop;

/// <summary>The libc calls the image backend needs that .NET does not expose (O_DIRECT, preadv, hole punching, flock).</summary>
internal static unsafe partial class Libc
{
    public const int O_RDONLY = 0;
    public const int O_RDWR = 2;
    public const int O_CLOEXEC = 0x80000;
    public const int O_DIRECT = 0x4000;

    public const int LOCK_SH = 1;
    public const int LOCK_EX = 2;
    public const int LOCK_NB = 4;

    public const int FALLOC_FL_KEEP_SIZE = 1;
    public const int FALLOC_FL_PUNCH_HOLE = 2;

    public const int EINTR = 4;
    public const int EAGAIN = 11;
    public const int EWOULDBLOCK = EAGAIN;

    [StructLayout(LayoutKind.Sequential)]
    public struct IoVec
    {
        public void* Base;
        public nuint Length;
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Open(string path, int flags, uint mode);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "preadv", SetLastError = true)]
    public static partial nint PReadV(int fd, IoVec* iov, int iovcnt, long offset);

    [LibraryImport("libc", EntryPoint = "pwritev", SetLastError = true)]
    public static partial nint PWriteV(int fd, IoVec* iov, int iovcnt, long offset);

    [LibraryImport("libc", EntryPoint = "pread", SetLastError = true)]
    public static partial nint PRead(int fd, byte* buf, nuint count, long offset);

    [LibraryImport("libc", EntryPoint = "fdatasync", SetLastError = true)]
    public static partial int FDataSync(int fd);

    [LibraryImport("libc", EntryPoint = "fallocate", SetLastError = true)]
    public static partial int FAllocate(int fd, int mode, long offset, long length);

    [LibraryImport("libc", EntryPoint = "flock", SetLastError = true)]
    public static partial int Flock(int fd, int operation);

    [LibraryImport("libc", EntryPoint = "lseek", SetLastError = true)]
    public static partial long LSeek(int fd, long offset, int whence);

    /// <summary><c>struct statfs</c> on x86_64: f_type and f_bsize are the first two longs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct StatFs
    {
        public long Type;
        public long BlockSize;
        public fixed long Rest[14];
    }

    [LibraryImport("libc", EntryPoint = "fstatfs", SetLastError = true)]
    public static partial int FStatFs(int fd, StatFs* buf);

    public const int SEEK_END = 2;
}
