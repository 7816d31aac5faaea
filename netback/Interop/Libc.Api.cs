using System.Runtime.InteropServices;

namespace XenIo.Netback.Api;

internal static partial class Interop
{
    [LibraryImport("libc", EntryPoint = "umask")]
    internal static partial uint Umask(uint mask);
}
