using System.Runtime.InteropServices;

namespace XenIo.Guest.Interop;

internal static unsafe partial class Libc
{
    /// <summary>
    /// What blkfront's FUSE server and loop attachment call: /dev/fuse reads and vectored replies,
    /// mount, LOOP_CONFIGURE, hole punching. Nested so its names never collide with the agent's own
    /// calls in the same partial class.
    /// </summary>
    internal static partial class Fuse
    {
        public const int EPERM = 1;
        public const int ENOENT = 2;
        public const int EINTR = 4;
        public const int EIO = 5;
        public const int EAGAIN = 11;
        public const int EBUSY = 16;
        public const int EISDIR = 21;
        public const int EINVAL = 22;
        public const int EFBIG = 27;
        public const int ENOSPC = 28;
        public const int EROFS = 30;
        public const int ENOSYS = 38;
        public const int ENODEV = 19;
        public const int EPROTO = 71;
        public const int EOPNOTSUPP = 95;

        public const int O_RDONLY = 0;
        public const int O_RDWR = 2;
        public const int O_CLOEXEC = 0x80000;
        public const int O_DIRECT = 0x4000;
        public const int O_ACCMODE = 3;

        public const ulong MS_NOSUID = 2;
        public const ulong MS_NODEV = 4;
        public const int MNT_DETACH = 2;

        public const int FALLOC_FL_KEEP_SIZE = 1;
        public const int FALLOC_FL_PUNCH_HOLE = 2;

        // linux/loop.h
        public const ulong LOOP_CLR_FD = 0x4C01;
        public const ulong LOOP_CONFIGURE = 0x4C0A;
        public const ulong LOOP_CTL_GET_FREE = 0x4C82;
        public const uint LO_FLAGS_READ_ONLY = 1;
        public const uint LO_FLAGS_AUTOCLEAR = 4;
        public const uint LO_FLAGS_DIRECT_IO = 16;

        [StructLayout(LayoutKind.Sequential)]
        public struct IoVec
        {
            public void* Base;
            public nuint Length;
        }

        /// <summary><c>struct loop_config</c> (304 bytes): fd, block_size, loop_info64 (232), reserved[8].</summary>
        [StructLayout(LayoutKind.Explicit, Size = 304)]
        public struct LoopConfig
        {
            [FieldOffset(0)] public uint Fd;
            [FieldOffset(4)] public uint BlockSize;
            // loop_info64 starts at 8: lo_device, lo_inode, lo_rdevice, lo_offset, lo_sizelimit (u64 each),
            // lo_number, lo_encrypt_type, lo_encrypt_key_size, lo_flags (u32 each), lo_file_name[64], ...
            [FieldOffset(8 + 52)] public uint Flags;
            [FieldOffset(8 + 56)] public fixed byte FileName[64];
        }

        [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        public static partial int Open(string path, int flags, uint mode);

        [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
        public static partial int Close(int fd);

        [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
        public static partial nint Read(int fd, byte* buffer, nuint count);

        [LibraryImport("libc", EntryPoint = "writev", SetLastError = true)]
        public static partial nint WriteV(int fd, IoVec* iov, int count);

        [LibraryImport("libc", EntryPoint = "mount", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        public static partial int Mount(string source, string target, string fsType, ulong flags, string data);

        [LibraryImport("libc", EntryPoint = "umount2", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        public static partial int Umount2(string target, int flags);

        [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
        public static partial int Ioctl(int fd, ulong request, void* arg);

        [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
        public static partial int IoctlValue(int fd, ulong request, nint arg);

        [LibraryImport("libc", EntryPoint = "fallocate", SetLastError = true)]
        public static partial int FAllocate(nint fd, int mode, long offset, long length);

        [LibraryImport("libc", EntryPoint = "fdatasync", SetLastError = true)]
        public static partial int FDataSync(nint fd);
    }
}
