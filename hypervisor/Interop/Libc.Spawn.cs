using System.Runtime.InteropServices;

namespace XenIo.Hypervisor.Interop;

/// <summary>
/// The calls that start and reap guest agents, name their network namespaces and read their status:
/// posix_spawn with file actions and attributes, pidfds, waitid, pipes, poll, mount. They sit in a nested
/// class so that names as common as <c>close</c> or <c>kill</c> never collide with other areas' imports
/// in this partial class. All arguments are blittable; nothing here allocates per call.
/// </summary>
internal static unsafe partial class Libc
{
    internal static unsafe partial class Proc
    {
        public const int EINTR = 4;
        public const int EAGAIN = 11;
        public const int ESRCH = 3;
        public const int EINVAL = 22;
        public const int ENOENT = 2;
        public const int EBUSY = 16;

        public const int O_RDONLY = 0;
        public const int O_WRONLY = 1;
        public const int O_RDWR = 2;
        public const int O_CREAT = 0x40;
        public const int O_EXCL = 0x80;
        public const int O_NONBLOCK = 0x800;
        public const int O_CLOEXEC = 0x80000;

        // spawn.h (glibc)
        public const short POSIX_SPAWN_SETSIGDEF = 0x04;
        public const short POSIX_SPAWN_SETSIGMASK = 0x08;
        public const short POSIX_SPAWN_SETSID = 0x80;

        // Opaque glibc types, over-allocated: posix_spawnattr_t is 336 bytes, posix_spawn_file_actions_t 80,
        // sigset_t 128 on x86-64 and arm64.
        public const int SpawnAttrSize = 512;
        public const int FileActionsSize = 256;
        public const int SigsetSize = 128;

        // sys/wait.h
        public const int P_PID = 1;
        public const int P_PIDFD = 3;
        public const int WNOHANG = 1;
        public const int WEXITED = 4;
        public const int WNOWAIT = 0x01000000;
        public const int CLD_EXITED = 1;
        public const int CLD_KILLED = 2;
        public const int CLD_DUMPED = 3;

        // poll.h
        public const short POLLIN = 0x001;
        public const short POLLERR = 0x008;
        public const short POLLHUP = 0x010;
        public const short POLLNVAL = 0x020;

        // sys/mount.h
        public const ulong MS_BIND = 0x1000;
        public const ulong MS_REC = 0x4000;
        public const ulong MS_PRIVATE = 1 << 18;
        public const ulong MS_SHARED = 1 << 20;
        public const int MNT_DETACH = 2;

        public const int SIGKILL = 9;
        public const int SIGTERM = 15;

        private const long SYS_pidfd_send_signal = 424;
        private const long SYS_pidfd_open = 434;

        [LibraryImport("libc", EntryPoint = "posix_spawn", SetLastError = false)]
        public static partial int PosixSpawn(int* pid, byte* path, void* fileActions, void* attr, byte** argv, byte** envp);

        [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_init")]
        public static partial int FileActionsInit(void* actions);

        [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_destroy")]
        public static partial int FileActionsDestroy(void* actions);

        [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_adddup2")]
        public static partial int FileActionsAddDup2(void* actions, int fd, int newFd);

        [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_addopen")]
        public static partial int FileActionsAddOpen(void* actions, int fd, byte* path, int flags, uint mode);

        [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_addclosefrom_np")]
        public static partial int FileActionsAddCloseFrom(void* actions, int from);

        [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_addchdir_np")]
        public static partial int FileActionsAddChdir(void* actions, byte* path);

        [LibraryImport("libc", EntryPoint = "posix_spawnattr_init")]
        public static partial int SpawnAttrInit(void* attr);

        [LibraryImport("libc", EntryPoint = "posix_spawnattr_destroy")]
        public static partial int SpawnAttrDestroy(void* attr);

        [LibraryImport("libc", EntryPoint = "posix_spawnattr_setflags")]
        public static partial int SpawnAttrSetFlags(void* attr, short flags);

        [LibraryImport("libc", EntryPoint = "posix_spawnattr_setsigmask")]
        public static partial int SpawnAttrSetSigMask(void* attr, void* sigset);

        [LibraryImport("libc", EntryPoint = "posix_spawnattr_setsigdefault")]
        public static partial int SpawnAttrSetSigDefault(void* attr, void* sigset);

        [LibraryImport("libc", EntryPoint = "sigemptyset")]
        public static partial int SigEmptySet(void* set);

        [LibraryImport("libc", EntryPoint = "sigaddset")]
        public static partial int SigAddSet(void* set, int signo);

        [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
        private static partial int SyscallPidfdOpen(long number, int pid, uint flags);

        [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
        private static partial int SyscallPidfdSendSignal(long number, int pidfd, int sig, void* info, uint flags);

        public static int PidfdOpen(int pid) => SyscallPidfdOpen(SYS_pidfd_open, pid, 0);

        public static int PidfdSendSignal(int pidfd, int sig) => SyscallPidfdSendSignal(SYS_pidfd_send_signal, pidfd, sig, null, 0);

        [LibraryImport("libc", EntryPoint = "waitid", SetLastError = true)]
        public static partial int WaitId(int idType, int id, SigInfo* info, int options);

        [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
        public static partial int Kill(int pid, int sig);

        [LibraryImport("libc", EntryPoint = "pipe2", SetLastError = true)]
        public static partial int Pipe2(int* fds, int flags);

        [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
        public static partial nint Read(int fd, byte* buffer, nuint count);

        [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
        public static partial nint Write(int fd, byte* buffer, nuint count);

        [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
        public static partial int Close(int fd);

        [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
        public static partial int Poll(PollFd* fds, nuint count, int timeoutMs);

        [LibraryImport("libc", EntryPoint = "mount", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        public static partial int Mount(string? source, string target, string? fsType, ulong flags, string? data);

        [LibraryImport("libc", EntryPoint = "umount2", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        public static partial int Umount2(string target, int flags);
    }

    /// <summary>The SIGCHLD part of <c>siginfo_t</c> (128 bytes; the union starts at offset 16 on LP64).</summary>
    [StructLayout(LayoutKind.Explicit, Size = 128)]
    internal struct SigInfo
    {
        [FieldOffset(0)] public int Signo;
        [FieldOffset(4)] public int Errno;
        [FieldOffset(8)] public int Code;
        [FieldOffset(16)] public int Pid;
        [FieldOffset(20)] public uint Uid;
        [FieldOffset(24)] public int Status;
    }
}
