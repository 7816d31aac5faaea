using System.Runtime.InteropServices;

namespace XenIo.Guest.Interop;

internal static unsafe partial class Libc
{
    /// <summary>What blkfront's multi-page rings need: a reserved range with the domain's frames mapped side by side.</summary>
    internal static partial class Blkfront
    {
        public const int PROT_NONE = 0;
        public const int PROT_READ = 1;
        public const int PROT_WRITE = 2;
        public const int MAP_SHARED = 0x01;
        public const int MAP_PRIVATE = 0x02;
        public const int MAP_FIXED = 0x10;
        public const int MAP_ANONYMOUS = 0x20;
        public static readonly nint MAP_FAILED = -1;

        [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
        public static partial nint MMap(nint address, nuint length, int prot, int flags, int fd, long offset);

        [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
        public static partial int MUnmap(nint address, nuint length);
    }
}
