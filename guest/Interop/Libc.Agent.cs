using System.Runtime.InteropServices;

namespace XenIo.Guest.Interop;

/// <summary>
/// The calls the agent makes as PID 1 of its namespaces that .NET has no API for: mount, sethostname,
/// pty ioctls, interface flags, waitpid by pid, kill. All blittable; none allocates per call beyond
/// the UTF-8 marshalling of mount's strings (set-up only).
/// </summary>
internal static unsafe partial class Libc
{
    public const int EINTR = 4;
    public const int EIO = 5;
    public const int EAGAIN = 11;
    public const int ECHILD = 10;
    public const int EINVAL = 22;

    public const int O_RDWR = 2;
    public const int O_NOCTTY = 0x100;
    public const int O_CLOEXEC = 0x80000;

    public const int F_SETFD = 2;
    public const int FD_CLOEXEC = 1;

    // sys/mount.h
    public const ulong MS_RDONLY = 1;
    public const ulong MS_NOSUID = 2;
    public const ulong MS_NODEV = 4;
    public const ulong MS_NOEXEC = 8;
    public const ulong MS_BIND = 0x1000;
    public const ulong MS_REC = 0x4000;
    public const ulong MS_PRIVATE = 1 << 18;
    public const int MNT_DETACH = 2;

    // asm-generic/ioctls.h
    public const ulong TIOCGPTN = 0x80045430;
    public const ulong TIOCSPTLCK = 0x40045431;
    public const ulong TIOCSWINSZ = 0x5414;

    // linux/sockios.h, net/if.h
    public const ulong SIOCGIFFLAGS = 0x8913;
    public const ulong SIOCSIFFLAGS = 0x8914;
    public const short IFF_UP = 0x1;

    public const int WNOHANG = 1;
    public const int SIGTERM = 15;
    public const int SIGKILL = 9;

    [LibraryImport("libc", EntryPoint = "mount", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Mount(string? source, string target, string? fsType, ulong flags, string? data);

    [LibraryImport("libc", EntryPoint = "umount2", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Umount2(string target, int flags);

    [LibraryImport("libc", EntryPoint = "sethostname", SetLastError = true)]
    public static partial int SetHostname(byte* name, nuint length);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    public static partial nint Read(int fd, byte* buffer, nuint count);

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    public static partial nint Write(int fd, byte* buffer, nuint count);

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    public static partial int Fcntl(int fd, int cmd, int arg);

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    public static partial int Ioctl(int fd, ulong request, void* arg);

    [LibraryImport("libc", EntryPoint = "waitpid", SetLastError = true)]
    public static partial int WaitPid(int pid, int* status, int options);

    /// <summary>Ends the process at once: PID 1 must never abort (it ignores its own SIGABRT and would spin).</summary>
    [LibraryImport("libc", EntryPoint = "_exit")]
    public static partial void Exit(int status);

    public const int P_PID = 1;
    public const int WEXITED = 4;
    public const int WNOWAIT = 0x01000000;

    /// <summary>waitid with a 128-byte siginfo_t buffer (only used with WNOWAIT, to learn that a child exited).</summary>
    [LibraryImport("libc", EntryPoint = "waitid", SetLastError = true)]
    public static partial int WaitId(int idType, int id, byte* info, int options);

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int sig);
}

/// <summary><c>struct ifreq</c> with the flags member of its union (40 bytes on LP64).</summary>
[StructLayout(LayoutKind.Explicit, Size = 40)]
internal unsafe struct IfReqFlags
{
    [FieldOffset(0)] public fixed byte Name[16];
    [FieldOffset(16)] public short Flags;
}
