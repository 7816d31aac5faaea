using System.Runtime.InteropServices;

namespace XenIo.Cli.Interop;

/// <summary>Terminal modes for <c>xenio console</c>: raw while attached, as <c>xl console</c> does.</summary>
internal static unsafe partial class Libc
{
    /// <summary>Bytes reserved for glibc's <c>struct termios</c> (60 on x86_64 and aarch64).</summary>
    public const int TermiosSize = 128;
    public const int TCSANOW = 0;

    [LibraryImport("libc", EntryPoint = "isatty")]
    public static partial int IsATty(int fd);

    [LibraryImport("libc", EntryPoint = "tcgetattr", SetLastError = true)]
    public static partial int TcGetAttr(int fd, byte* termios);

    [LibraryImport("libc", EntryPoint = "tcsetattr", SetLastError = true)]
    public static partial int TcSetAttr(int fd, int optionalActions, byte* termios);

    [LibraryImport("libc", EntryPoint = "cfmakeraw")]
    public static partial void CfMakeRaw(byte* termios);
}
