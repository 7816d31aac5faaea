using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using XenIo.Guest.Interop;

namespace XenIo.Guest.Netfront;

/// <summary>
/// Configures a network interface in the guest's namespace the way a guest's init scripts would:
/// MAC, MTU, up, addresses, default route. ioctls rather than netlink or <c>ip</c>: the agent is PID 1
/// and must not run children it would have to reap, and these few calls need no more.
/// </summary>
internal static unsafe class GuestInterface
{
    public static void SetMac(string name, ReadOnlySpan<byte> mac)
    {
        var req = Request(name);
        *(ushort*)req.Union = Libc.ARPHRD_ETHER;
        mac.CopyTo(new Span<byte>(req.Union + 2, 6));
        Ioctl(AddressFamily.InterNetwork, Libc.SIOCSIFHWADDR, &req, $"SIOCSIFHWADDR {name}");
    }

    public static void SetMtu(string name, int mtu)
    {
        var req = Request(name);
        req.Value = mtu;
        Ioctl(AddressFamily.InterNetwork, Libc.SIOCSIFMTU, &req, $"SIOCSIFMTU {name}");
    }

    public static void Up(string name)
    {
        var req = Request(name);
        Ioctl(AddressFamily.InterNetwork, Libc.SIOCGIFFLAGS, &req, $"SIOCGIFFLAGS {name}");
        *(short*)req.Union |= Libc.IFF_UP;
        Ioctl(AddressFamily.InterNetwork, Libc.SIOCSIFFLAGS, &req, $"SIOCSIFFLAGS {name}");
    }

    public static void AddAddress(string name, VifAddress address)
    {
        if (address.Address.AddressFamily == AddressFamily.InterNetwork)
        {
            var req = Request(name);
            WriteSockaddrIn(req.Union, address.Address);
            Ioctl(AddressFamily.InterNetwork, Libc.SIOCSIFADDR, &req, $"SIOCSIFADDR {name} {address}");
            req = Request(name);
            WriteSockaddrIn(req.Union, Netmask(address.PrefixLength));
            Ioctl(AddressFamily.InterNetwork, Libc.SIOCSIFNETMASK, &req, $"SIOCSIFNETMASK {name} {address}");
        }
        else
        {
            var v6 = new In6IfReq { PrefixLength = (uint)address.PrefixLength, IfIndex = Index(name) };
            address.Address.GetAddressBytes().CopyTo(new Span<byte>(v6.Address, 16));
            Ioctl(AddressFamily.InterNetworkV6, Libc.SIOCSIFADDR, &v6, $"SIOCSIFADDR {name} {address}");
        }
    }

    /// <summary>The default route through <paramref name="gateway"/>; an existing one is left as it is.</summary>
    public static void AddDefaultRoute(string name, IPAddress gateway)
    {
        var device = Encoding.ASCII.GetBytes(name + "\0");
        if (gateway.AddressFamily == AddressFamily.InterNetwork)
        {
            fixed (byte* dev = device)
            {
                var rt = new RtEntry { Flags = Libc.RTF_UP | Libc.RTF_GATEWAY, Metric = 1, Device = dev };
                WriteSockaddrIn(rt.Destination, IPAddress.Any);
                WriteSockaddrIn(rt.Genmask, IPAddress.Any);
                WriteSockaddrIn(rt.Gateway, gateway);
                Ioctl(AddressFamily.InterNetwork, Libc.SIOCADDRT, &rt, $"SIOCADDRT default via {gateway}", allowExisting: true);
            }
        }
        else
        {
            var rt = new In6RtMsg { Flags = Libc.RTF_UP | Libc.RTF_GATEWAY, Metric = 1, IfIndex = Index(name) };
            gateway.GetAddressBytes().CopyTo(new Span<byte>(rt.Gateway, 16));
            Ioctl(AddressFamily.InterNetworkV6, Libc.SIOCADDRT, &rt, $"SIOCADDRT default via {gateway}", allowExisting: true);
        }
    }

    public static int Index(string name)
    {
        var req = Request(name);
        Ioctl(AddressFamily.InterNetwork, Libc.SIOCGIFINDEX, &req, $"SIOCGIFINDEX {name}");
        return req.Value;
    }

    /// <summary>Tells the TAP which offloads this side takes (TUNSETOFFLOAD): the kernel then hands us only those.</summary>
    public static bool SetOffloads(int tapFd, bool csum, bool tso4, bool tso6)
    {
        uint flags = (csum ? Libc.TUN_F_CSUM : 0) | (csum && tso4 ? Libc.TUN_F_TSO4 : 0) | (csum && tso6 ? Libc.TUN_F_TSO6 : 0);
        return Libc.IoctlValue(tapFd, Libc.TUNSETOFFLOAD, flags) == 0;
    }

    /// <summary>TUNSETCARRIER: the guest sees the link down while no backend serves the vif (netif_carrier_off in netfront).</summary>
    public static bool SetCarrier(int tapFd, bool on)
    {
        var value = on ? 1 : 0;
        return Libc.Ioctl(tapFd, Libc.TUNSETCARRIER, &value) == 0;
    }

    private static IPAddress Netmask(int prefix) =>
        new(System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(prefix == 0 ? 0u : uint.MaxValue << (32 - prefix)));

    private static void WriteSockaddrIn(byte* sockaddr, IPAddress address)
    {
        new Span<byte>(sockaddr, 16).Clear();
        *(ushort*)sockaddr = Libc.AF_INET;
        address.GetAddressBytes().CopyTo(new Span<byte>(sockaddr + 4, 4));
    }

    private static IfReq Request(string name)
    {
        var req = default(IfReq);
        var bytes = Encoding.ASCII.GetBytes(name);
        if (bytes.Length > 15) throw new ArgumentException($"interface name '{name}' is longer than 15 characters");
        bytes.CopyTo(new Span<byte>(req.Name, 16));
        return req;
    }

    private static void Ioctl(AddressFamily family, ulong request, void* argument, string what, bool allowExisting = false)
    {
        using var socket = new Socket(family, SocketType.Dgram, ProtocolType.Udp);
        var fd = (int)socket.SafeHandle.DangerousGetHandle();
        if (Libc.Ioctl(fd, request, argument) == 0) return;
        var errno = Marshal.GetLastPInvokeError();
        if (allowExisting && errno == Libc.EEXIST) return;
        throw new IOException($"{what}: {Marshal.GetPInvokeErrorMessage(errno)}");
    }
}
