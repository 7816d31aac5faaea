using System.Runtime.InteropServices;

namespace XenIo.Hypervisor.Interop;

internal static partial class Libc
{
    public const int AT_FDCWD = -100;
    public const int AT_EACCESS = 0x200;
    public const int R_OK = 4;
    public const int W_OK = 2;

    /// <summary>
    /// faccessat(2) with the effective ids: "could this daemon open it so", without opening it. Opening
    /// through .NET would take an advisory flock, which a backend holding the image exclusively refuses.
    /// </summary>
    [LibraryImport("libc", EntryPoint = "faccessat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int FAccessAt(int dirfd, string path, int mode, int flags);
}
