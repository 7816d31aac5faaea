using System.Runtime.InteropServices;
using System.Text;
using XenIo.Net.Frames;
using XenIo.Net.Interop;

namespace XenIo.Net.Tap;

/// <summary>
/// A Linux TAP device opened with IFF_VNET_HDR: every frame read or written is preceded by a 12-byte
/// <see cref="VirtioNetHeader"/>, and with <see cref="Offloads"/> the kernel hands over 64 KiB GSO
/// frames with partial checksums instead of 1500-byte segments (LINUX-NOTES: the difference between
/// 2 and 16 Gbit/s). The descriptor is non-blocking; reads and writes are raw readv/writev calls that
/// return -EAGAIN instead of waiting, for use from an <see cref="EpollLoop"/>.
/// </summary>
public sealed unsafe class TapDevice : IDisposable
{
    public const int IfNameSize = 16;
    private int _fd;

    private TapDevice(int fd, string name, bool offloads)
    {
        _fd = fd;
        Name = name;
        Offloads = offloads;
    }

    /// <summary>The interface name the kernel gave (the requested one, or tapN).</summary>
    public string Name { get; }

    /// <summary>True when the kernel may send GSO frames with partial checksums (and accepts them).</summary>
    public bool Offloads { get; }

    public int Fd => _fd;

    /// <summary>
    /// Creates (or attaches to) the TAP interface <paramref name="name"/> ("" lets the kernel pick).
    /// Throws <see cref="IOException"/> with the errno when the kernel refuses.
    /// </summary>
    public static TapDevice Create(string name, bool offloads = true)
    {
        if (Encoding.ASCII.GetByteCount(name) >= IfNameSize) throw new ArgumentException("interface names have at most 15 characters", nameof(name));
        var fd = Libc.Open("/dev/net/tun", Libc.O_RDWR | Libc.O_NONBLOCK | Libc.O_CLOEXEC);
        if (fd < 0) throw new IOException($"open /dev/net/tun: errno {Libc.Errno}");
        try
        {
            // struct ifreq: ifr_name[16], then the union whose first member here is short ifr_flags.
            var ifreq = stackalloc byte[40];
            new Span<byte>(ifreq, 40).Clear();
            Encoding.ASCII.GetBytes(name, new Span<byte>(ifreq, IfNameSize - 1));
            *(short*)(ifreq + 16) = (short)(Libc.IFF_TAP | Libc.IFF_NO_PI | Libc.IFF_VNET_HDR);
            if (Libc.Ioctl(fd, Libc.TUNSETIFF, ifreq) < 0) throw new IOException($"TUNSETIFF {name}: errno {Libc.Errno}");
            var headerSize = VirtioNetHeader.Size;
            if (Libc.Ioctl(fd, Libc.TUNSETVNETHDRSZ, &headerSize) < 0) throw new IOException($"TUNSETVNETHDRSZ: errno {Libc.Errno}");
            var offload = offloads ? Libc.TUN_F_CSUM | Libc.TUN_F_TSO4 | Libc.TUN_F_TSO6 : 0u;
            if (Libc.Ioctl(fd, Libc.TUNSETOFFLOAD, (nuint)offload) < 0) throw new IOException($"TUNSETOFFLOAD: errno {Libc.Errno}");
            var actual = Marshal.PtrToStringAnsi((nint)ifreq) ?? name;
            return new TapDevice(fd, actual, offloads);
        }
        catch
        {
            Libc.Close(fd);
            throw;
        }
    }

    /// <summary>
    /// Sets the interface's MTU, as <c>ip link set NAME mtu N</c> does (SIOCSIFMTU on a socket; a TAP's own
    /// descriptor takes no such request). The request names the interface, so it is made only while the
    /// TAP is in this process's network namespace: once moved (<c>ip link set … netns</c>) the name here
    /// may be another interface's. An MTU the interface has already is not set again (that needs no
    /// privilege). Throws <see cref="IOException"/> with the kernel's reason: EINVAL outside the device's
    /// range (68-65535 for a TAP), EPERM without CAP_NET_ADMIN.
    /// </summary>
    public void SetMtu(int mtu)
    {
        var fd = Volatile.Read(ref _fd);
        ObjectDisposedException.ThrowIf(fd < 0, this);
        if (!InThisNamespace(fd)) throw new IOException($"cannot set the MTU of interface {Name}: it has moved to another network namespace; set it there");
        var sock = Libc.Socket(Libc.AF_INET, Libc.SOCK_DGRAM | Libc.SOCK_CLOEXEC, 0);
        if (sock < 0) throw new IOException($"cannot set the MTU of interface {Name}: socket: {Reason(Libc.Errno)}");
        try
        {
            // struct ifreq: ifr_name[16], then the union whose member here is int ifr_mtu.
            var ifreq = stackalloc byte[40];
            new Span<byte>(ifreq, 40).Clear();
            Encoding.ASCII.GetBytes(Name, new Span<byte>(ifreq, IfNameSize - 1));
            if (Libc.Ioctl(sock, Libc.SIOCGIFMTU, ifreq) == 0 && *(int*)(ifreq + 16) == mtu) return;
            *(int*)(ifreq + 16) = mtu;
            if (Libc.Ioctl(sock, Libc.SIOCSIFMTU, ifreq) < 0) throw new IOException($"cannot set the MTU of interface {Name} to {mtu}: {Reason(Libc.Errno)}");
        }
        finally
        {
            Libc.Close(sock);
        }
    }

    /// <summary>True unless the kernel says the TAP's interface lives in another network namespace than this thread.</summary>
    private static bool InThisNamespace(int fd)
    {
        var ns = Libc.Ioctl(fd, Libc.TUNGETDEVNETNS, 0);
        if (ns < 0) return true; // a kernel before 5.2 cannot tell; the name is all there is
        try
        {
            // Both links read net:[inode]: the same inode is the same namespace.
            return new FileInfo($"/proc/self/fd/{ns}").LinkTarget == new FileInfo("/proc/thread-self/ns/net").LinkTarget;
        }
        finally
        {
            Libc.Close(ns);
        }
    }

    private static string Reason(int errno) => $"{Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})";

    /// <summary>
    /// Reads one frame: its virtio-net header into <paramref name="header"/> (12 bytes) and the frame into
    /// <paramref name="frame"/>. Returns the frame length, or a negative errno (-EAGAIN when none is waiting).
    /// </summary>
    public int Read(Span<byte> header, Span<byte> frame)
    {
        fixed (byte* h = header)
        fixed (byte* f = frame)
        {
            var iov = stackalloc IoVec[2];
            iov[0] = new IoVec { Base = h, Length = VirtioNetHeader.Size };
            iov[1] = new IoVec { Base = f, Length = (nuint)frame.Length };
            while (true)
            {
                var n = Libc.ReadV(_fd, iov, 2);
                if (n >= 0) return n < VirtioNetHeader.Size ? -Libc.EAGAIN : (int)n - VirtioNetHeader.Size;
                var errno = Libc.Errno;
                if (errno != Libc.EINTR) return -errno;
            }
        }
    }

    /// <summary>Writes one frame with its header. Returns the frame length written or a negative errno.</summary>
    public int Write(ReadOnlySpan<byte> header, ReadOnlySpan<byte> frame)
    {
        fixed (byte* h = header)
        fixed (byte* f = frame)
        {
            var iov = stackalloc IoVec[2];
            iov[0] = new IoVec { Base = h, Length = VirtioNetHeader.Size };
            iov[1] = new IoVec { Base = f, Length = (nuint)frame.Length };
            while (true)
            {
                var n = Libc.WriteV(_fd, iov, 2);
                if (n >= 0) return (int)n - VirtioNetHeader.Size;
                var errno = Libc.Errno;
                if (errno != Libc.EINTR) return -errno;
            }
        }
    }

    public void Dispose()
    {
        var fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0) Libc.Close(fd);
    }
}
