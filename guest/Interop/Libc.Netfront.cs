using System.Runtime.InteropServices;

namespace XenIo.Guest.Interop;

/// <summary>One <c>struct iovec</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct IoVec
{
    public void* Base;
    public nuint Length;
}

/// <summary><c>struct pollfd</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct PollFd
{
    public int Fd;
    public short Events;
    public short Revents;
}

/// <summary>
/// netfront's calls: readv/writev straight between the TAP and granted pages (no staging copy), poll
/// on the TAP, TUNSETOFFLOAD as the backend's features allow, and the interface ioctls that give
/// <c>eth&lt;N&gt;</c> its MAC, MTU, addresses and gateway (no netlink, no child process: the agent is PID 1).
/// </summary>
internal static unsafe partial class Libc
{
    public const int EBUSY = 16;
    public const int EEXIST = 17;
    public const short POLLIN = 0x1;

    // linux/if_tun.h
    public const ulong TUNSETOFFLOAD = 0x400454D0;
    public const ulong TUNSETCARRIER = 0x400454E2;
    public const uint TUN_F_CSUM = 0x01;
    public const uint TUN_F_TSO4 = 0x02;
    public const uint TUN_F_TSO6 = 0x04;

    // linux/sockios.h
    public const ulong SIOCADDRT = 0x890B;
    public const ulong SIOCSIFADDR = 0x8916;
    public const ulong SIOCSIFNETMASK = 0x891C;
    public const ulong SIOCSIFMTU = 0x8922;
    public const ulong SIOCSIFHWADDR = 0x8924;
    public const ulong SIOCGIFINDEX = 0x8933;

    public const ushort ARPHRD_ETHER = 1;
    public const ushort AF_INET = 2;
    public const ushort AF_INET6 = 10;
    public const ushort RTF_UP = 0x1;
    public const ushort RTF_GATEWAY = 0x2;

    [LibraryImport("libc", EntryPoint = "readv", SetLastError = true)]
    public static partial nint ReadV(int fd, IoVec* iov, int count);

    [LibraryImport("libc", EntryPoint = "writev", SetLastError = true)]
    public static partial nint WriteV(int fd, IoVec* iov, int count);

    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    public static partial int Poll(PollFd* fds, nuint count, int timeoutMs);

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    public static partial int IoctlValue(int fd, ulong request, nuint arg);

    public static int Errno => Marshal.GetLastPInvokeError();
}

/// <summary><c>struct ifreq</c> with the union as raw bytes (40 bytes on LP64): sockaddr, mtu or ifindex at 16.</summary>
[StructLayout(LayoutKind.Explicit, Size = 40)]
internal unsafe struct IfReq
{
    [FieldOffset(0)] public fixed byte Name[16];
    [FieldOffset(16)] public fixed byte Union[24];
    [FieldOffset(16)] public int Value;
}

/// <summary><c>struct in6_ifreq</c> (linux/ipv6.h).</summary>
[StructLayout(LayoutKind.Explicit, Size = 24)]
internal unsafe struct In6IfReq
{
    [FieldOffset(0)] public fixed byte Address[16];
    [FieldOffset(16)] public uint PrefixLength;
    [FieldOffset(20)] public int IfIndex;
}

/// <summary><c>struct rtentry</c> (net/route.h, LP64): sockaddrs at 8, 24, 40; flags at 56; metric at 80; dev at 88.</summary>
[StructLayout(LayoutKind.Explicit, Size = 120)]
internal unsafe struct RtEntry
{
    [FieldOffset(8)] public fixed byte Destination[16];
    [FieldOffset(24)] public fixed byte Gateway[16];
    [FieldOffset(40)] public fixed byte Genmask[16];
    [FieldOffset(56)] public ushort Flags;
    [FieldOffset(80)] public short Metric;
    [FieldOffset(88)] public byte* Device;
}

/// <summary><c>struct in6_rtmsg</c> (linux/ipv6_route.h).</summary>
[StructLayout(LayoutKind.Explicit, Size = 80)]
internal unsafe struct In6RtMsg
{
    [FieldOffset(0)] public fixed byte Destination[16];
    [FieldOffset(16)] public fixed byte Source[16];
    [FieldOffset(32)] public fixed byte Gateway[16];
    [FieldOffset(48)] public uint Type;
    [FieldOffset(52)] public ushort DestinationLength;
    [FieldOffset(54)] public ushort SourceLength;
    [FieldOffset(56)] public uint Metric;
    [FieldOffset(64)] public ulong Info;
    [FieldOffset(72)] public uint Flags;
    [FieldOffset(76)] public int IfIndex;
}
