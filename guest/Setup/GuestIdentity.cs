using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using XenIo.Guest.Interop;
using static XenIo.Guest.Interop.Libc;

namespace XenIo.Guest.Setup;

/// <summary>The guest's hostname (its domain's name, in its uts namespace) and its loopback interface.</summary>
internal static class GuestIdentity
{
    public static unsafe void SetHostname(string name)
    {
        var bytes = Encoding.ASCII.GetBytes(name);
        if (bytes.Length is 0 or > 64) throw new ArgumentException($"hostname '{name}' must be 1..64 characters");
        fixed (byte* p = bytes)
            if (Interop.Libc.SetHostname(p, (nuint)bytes.Length) != 0)
                throw new IOException($"sethostname: {Marshal.GetLastPInvokeErrorMessage()}");
    }

    /// <summary>Sets <c>lo</c> up in the guest's new network namespace (it starts down).</summary>
    public static unsafe void LoopbackUp()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        var fd = (int)socket.SafeHandle.DangerousGetHandle();
        IfReqFlags req = default;
        req.Name[0] = (byte)'l';
        req.Name[1] = (byte)'o';
        if (Ioctl(fd, SIOCGIFFLAGS, &req) != 0) throw new IOException($"SIOCGIFFLAGS lo: {Marshal.GetLastPInvokeErrorMessage()}");
        req.Flags |= IFF_UP;
        if (Ioctl(fd, SIOCSIFFLAGS, &req) != 0) throw new IOException($"SIOCSIFFLAGS lo: {Marshal.GetLastPInvokeErrorMessage()}");
    }
}
