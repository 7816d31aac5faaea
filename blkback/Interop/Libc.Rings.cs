using System.Runtime.InteropServices;

namespace XenIo.Blkback.Interop;

/// <summary>The mapping calls that lay a multi-page ring's granted pages side by side (mmap, mremap).</summary>
internal static unsafe partial class Libc
{
    public const int PROT_NONE = 0;
    public const int MAP_PRIVATE = 0x02;
    public const int MAP_ANONYMOUS = 0x20;
    public const int MREMAP_MAYMOVE = 1;
    public const int MREMAP_FIXED = 2;
    public static readonly nint MAP_FAILED = -1;

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    public static partial nint MMap(nint address, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    public static partial int MUnmap(nint address, nuint length);

    [LibraryImport("libc", EntryPoint = "mremap", SetLastError = true)]
    public static partial nint MRemap(nint oldAddress, nuint oldSize, nuint newSize, int flags, nint newAddress);
}
