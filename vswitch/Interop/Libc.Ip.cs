namespace XenIo.VSwitch.Interop;

/// <summary>IP socket options .NET has no name for (linux/in6.h), set with Socket.SetRawSocketOption.</summary>
internal static partial class Libc
{
    public const int IPPROTO_IPV6 = 41;

    /// <summary>Refuse (EMSGSIZE) an IPv6 datagram larger than the path MTU instead of fragmenting it.</summary>
    public const int IPV6_DONTFRAG = 62;
}
