using System.Runtime.InteropServices;

namespace XenIo.Cli.Interop;

internal static partial class Libc
{
    public const int SIGTERM = 15;

    /// <summary>kill(2): .NET's Process.Kill only sends SIGKILL, and `down` must let the supervisor stop its daemons in order.</summary>
    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int signal);
}
