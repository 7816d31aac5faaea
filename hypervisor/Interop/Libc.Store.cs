using System.Runtime.InteropServices;

namespace XenIo.Hypervisor.Interop;

internal static partial class Libc
{
    /// <summary>geteuid(2): who the daemon runs as (the xenstored socket admits root and this user only).</summary>
    [LibraryImport("libc", EntryPoint = "geteuid")]
    internal static partial uint GetEffectiveUserId();
}
