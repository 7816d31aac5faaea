using System.Runtime.InteropServices;

namespace XenIo.Hypervisor.Interop;

/// <summary>Unix sockets with descriptor passing (SCM_RIGHTS), poll and epoll.</summary>
internal static unsafe partial class Libc
{
    public const int AF_UNIX = 1;
    public const int SOCK_STREAM = 1;
    public const int SOCK_SEQPACKET = 5;
    public const int SOCK_NONBLOCK = 0x800;
    public const int SOCK_CLOEXEC = 0x80000;

    public const int MSG_TRUNC = 0x20;
    public const int MSG_CTRUNC = 0x8;
    public const int MSG_DONTWAIT = 0x40;
    public const int MSG_NOSIGNAL = 0x4000;
    public const int MSG_CMSG_CLOEXEC = 0x40000000;

    public const int SOL_SOCKET = 1;
    public const int SCM_RIGHTS = 1;

    public const short POLLIN = 0x1;
    public const short POLLERR = 0x8;
    public const short POLLHUP = 0x10;

    public const int EPOLL_CLOEXEC = 0x80000;
    public const int EPOLL_CTL_ADD = 1;
    public const int EPOLL_CTL_DEL = 2;
    public const uint EPOLLIN = 0x1;
    public const uint EPOLLERR = 0x8;
    public const uint EPOLLHUP = 0x10;
    public const uint EPOLLRDHUP = 0x2000;

    [StructLayout(LayoutKind.Sequential)]
    public struct IoVec
    {
        public void* Base;
        public nuint Length;
    }

    /// <summary><c>struct msghdr</c> (LP64).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct MsgHdr
    {
        public void* Name;
        public uint NameLength;
        public IoVec* Iov;
        public nuint IovLength;
        public void* Control;
        public nuint ControlLength;
        public int Flags;
    }

    /// <summary><c>struct cmsghdr</c> header; data follows at <see cref="CmsgDataOffset"/>.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct CmsgHdr
    {
        public nuint Length;
        public int Level;
        public int Type;
    }

    public const int CmsgDataOffset = 16;
    public static int CmsgLen(int dataBytes) => CmsgDataOffset + dataBytes;
    public static int CmsgSpace(int dataBytes) => CmsgDataOffset + ((dataBytes + 7) & ~7);

    [StructLayout(LayoutKind.Sequential)]
    public struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    /// <summary><c>struct epoll_event</c>: packed on x86_64 (12 bytes), which is the only layout we build for.</summary>
    [StructLayout(LayoutKind.Sequential, Pack = 4)]
    public struct EpollEvent
    {
        public uint Events;
        public ulong Data;
    }

    [LibraryImport("libc", SetLastError = true)]
    public static partial int socketpair(int domain, int type, int protocol, int* sv);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint sendmsg(int fd, MsgHdr* msg, int flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint recvmsg(int fd, MsgHdr* msg, int flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint send(int fd, void* buffer, nuint length, int flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint recv(int fd, void* buffer, nuint length, int flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int poll(PollFd* fds, nuint count, int timeoutMs);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int accept4(int fd, void* address, void* addressLength, int flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int epoll_create1(int flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int epoll_ctl(int epfd, int op, int fd, EpollEvent* ev);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int epoll_wait(int epfd, EpollEvent* events, int maxEvents, int timeoutMs);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int eventfd(uint initval, int flags);

    public const int EFD_CLOEXEC = 0x80000;
    public const int EFD_NONBLOCK = 0x800;

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint write(int fd, void* buffer, nuint length);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint read(int fd, void* buffer, nuint length);

    /// <summary>
    /// Sends one message with up to <paramref name="fds"/>.Length descriptors attached. Returns bytes
    /// sent or -errno. The control buffer is on the stack: no allocation.
    /// </summary>
    public static nint SendWithDescriptors(int socket, ReadOnlySpan<byte> payload, ReadOnlySpan<int> fds, int flags)
    {
        const int MaxFds = 8;
        if (fds.Length > MaxFds) throw new ArgumentOutOfRangeException(nameof(fds));
        byte* control = stackalloc byte[CmsgSpace(MaxFds * sizeof(int))];
        fixed (byte* data = payload)
        {
            var iov = new IoVec { Base = data, Length = (nuint)payload.Length };
            var msg = new MsgHdr { Iov = &iov, IovLength = 1 };
            if (fds.Length > 0)
            {
                var header = (CmsgHdr*)control;
                header->Length = (nuint)CmsgLen(fds.Length * sizeof(int));
                header->Level = SOL_SOCKET;
                header->Type = SCM_RIGHTS;
                var slots = (int*)(control + CmsgDataOffset);
                for (int i = 0; i < fds.Length; i++) slots[i] = fds[i];
                msg.Control = control;
                msg.ControlLength = (nuint)CmsgSpace(fds.Length * sizeof(int));
            }
            while (true)
            {
                nint sent = sendmsg(socket, &msg, flags | MSG_NOSIGNAL);
                if (sent >= 0) return sent;
                int errno = Errno;
                if (errno != EINTR) return -errno;
            }
        }
    }

    /// <summary>
    /// Receives one message and any descriptors attached (close-on-exec). Returns bytes received,
    /// 0 at end of file, or -errno. <paramref name="fdCount"/> descriptors land in <paramref name="fds"/>;
    /// any beyond its length are closed. <paramref name="truncated"/> reports a message larger than the buffer.
    /// </summary>
    public static nint ReceiveWithDescriptors(int socket, Span<byte> buffer, Span<int> fds, out int fdCount, out bool truncated, int flags)
    {
        const int MaxFds = 8;
        byte* control = stackalloc byte[CmsgSpace(MaxFds * sizeof(int))];
        fdCount = 0;
        truncated = false;
        fixed (byte* data = buffer)
        {
            var iov = new IoVec { Base = data, Length = (nuint)buffer.Length };
            var msg = new MsgHdr { Iov = &iov, IovLength = 1, Control = control, ControlLength = (nuint)CmsgSpace(MaxFds * sizeof(int)) };
            nint received;
            while (true)
            {
                received = recvmsg(socket, &msg, flags | MSG_CMSG_CLOEXEC);
                if (received >= 0) break;
                int errno = Errno;
                if (errno != EINTR) return -errno;
            }
            truncated = (msg.Flags & (MSG_TRUNC | MSG_CTRUNC)) != 0;
            // Walk the control messages; every descriptor we were given must end up owned or closed.
            nuint offset = 0;
            while (msg.ControlLength >= (nuint)CmsgDataOffset && offset + (nuint)CmsgDataOffset <= msg.ControlLength)
            {
                var header = (CmsgHdr*)(control + offset);
                if (header->Length < (nuint)CmsgDataOffset || offset + header->Length > msg.ControlLength) break;
                if (header->Level == SOL_SOCKET && header->Type == SCM_RIGHTS)
                {
                    int count = (int)((header->Length - (nuint)CmsgDataOffset) / sizeof(int));
                    var slots = (int*)(control + offset + (nuint)CmsgDataOffset);
                    for (int i = 0; i < count; i++)
                    {
                        if (fdCount < fds.Length) fds[fdCount++] = slots[i];
                        else close(slots[i]);
                    }
                }
                offset += (header->Length + 7) & ~(nuint)7;
            }
            return received;
        }
    }

    /// <summary>Waits until <paramref name="fd"/> is readable (or hung up). Returns false on timeout.</summary>
    public static bool PollReadable(int fd, int timeoutMs)
    {
        var pfd = new PollFd { Fd = fd, Events = POLLIN };
        while (true)
        {
            int rc = poll(&pfd, 1, timeoutMs);
            if (rc > 0) return true;
            if (rc == 0) return false;
            if (Errno != EINTR) return true; // let the caller's read report the error
        }
    }

    /// <summary>A close-on-exec socketpair; returns false with errno set on failure.</summary>
    public static bool TrySocketPair(int type, out int first, out int second)
    {
        int* sv = stackalloc int[2];
        if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) != 0)
        {
            first = second = -1;
            return false;
        }
        first = sv[0];
        second = sv[1];
        return true;
    }
}
