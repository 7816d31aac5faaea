using System.Buffers.Binary;
using XenIo.Net.Frames;

namespace XenIo.Netback.Vif;

/// <summary>
/// What a vif lets through beside the switch's own checks: <c>mac=</c> and <c>ip=</c> anti-spoofing on
/// frames from the guest (the job Xen's vif-bridge script gives ebtables/iptables), and the multicast
/// list the frontend keeps with MCAST_ADD/DEL extras when it asked for multicast control
/// (<c>XEN_NETBK_MCAST_MAX</c> entries). Settings swap atomically; readers never lock.
/// </summary>
public sealed class VifFilter
{
    /// <summary>Linux's XEN_NETBK_MCAST_MAX.</summary>
    public const int MaxMulticast = 64;

    private ulong _mac;
    private uint[] _ipv4 = [];
    private ulong[] _multicast = [];
    private readonly Lock _gate = new();

    public bool MulticastControl { get; set; }

    public void Configure(ulong mac, uint[] ipv4)
    {
        Volatile.Write(ref _mac, mac);
        Volatile.Write(ref _ipv4, ipv4);
    }

    public int MulticastCount => Volatile.Read(ref _multicast).Length;

    /// <summary>
    /// A frame from the guest: its source MAC must be the vif's; with addresses configured, an IPv4
    /// source (0.0.0.0 allowed only for DHCP) and an ARP sender must be among them, behind one 802.1Q or
    /// 802.1ad tag at most (stacked tags are refused). Other EtherTypes are not address-checked (IPv6
    /// entries of <c>ip=</c> are not enforced).
    /// </summary>
    public bool AllowsTx(ReadOnlySpan<byte> frame)
    {
        if (frame.Length < EtherTypes.EthernetHeaderLength) return false;
        var mac = Volatile.Read(ref _mac);
        if (mac != 0)
        {
            var source = (ulong)BinaryPrimitives.ReadUInt32BigEndian(frame[6..]) << 16 | BinaryPrimitives.ReadUInt16BigEndian(frame[10..]);
            if (source != mac) return false;
        }
        var ips = Volatile.Read(ref _ipv4);
        if (ips.Length == 0) return true;
        var l3 = EtherTypes.EthernetHeaderLength;
        var etherType = BinaryPrimitives.ReadUInt16BigEndian(frame[12..]);
        if (etherType is EtherTypes.Vlan or EtherTypes.ServiceVlan)
        {
            if (frame.Length < l3 + 4) return false;
            etherType = BinaryPrimitives.ReadUInt16BigEndian(frame[16..]);
            l3 += 4;
            // The switch pops one 802.1Q tag and Linux receivers strip a priority tag of either TPID, so
            // what hides behind a second tag reaches them as IPv4 or ARP unchecked: refuse it.
            if (etherType is EtherTypes.Vlan or EtherTypes.ServiceVlan) return false;
        }
        if (etherType == EtherTypes.IPv4)
        {
            if (frame.Length < l3 + 20) return false;
            var src = BinaryPrimitives.ReadUInt32BigEndian(frame[(l3 + 12)..]);
            if (src == 0) return IsDhcpRequest(frame, l3);
            return Contains(ips, src);
        }
        if (etherType == EtherTypes.Arp)
        {
            if (frame.Length < l3 + 28) return false;
            var sender = BinaryPrimitives.ReadUInt32BigEndian(frame[(l3 + 14)..]);
            return sender == 0 || Contains(ips, sender); // 0: an ARP probe (RFC 5227)
        }
        return true;
    }

    private static bool IsDhcpRequest(ReadOnlySpan<byte> frame, int l3)
    {
        var ihl = (frame[l3] & 0x0F) * 4;
        if (frame[l3 + 9] != EtherTypes.Udp || ihl < 20 || frame.Length < l3 + ihl + 8) return false;
        return BinaryPrimitives.ReadUInt16BigEndian(frame[(l3 + ihl + 2)..]) == 67;
    }

    private static bool Contains(uint[] list, uint value)
    {
        foreach (var v in list)
            if (v == value) return true;
        return false;
    }

    /// <summary>A frame to the guest: with multicast control on, multicast (not broadcast) only to joined groups.</summary>
    public bool AllowsRx(ReadOnlySpan<byte> frame)
    {
        if (!MulticastControl || (frame[0] & 1) == 0) return true;
        var destination = (ulong)BinaryPrimitives.ReadUInt32BigEndian(frame) << 16 | BinaryPrimitives.ReadUInt16BigEndian(frame[4..]);
        if (destination == 0xFFFF_FFFF_FFFF) return true;
        foreach (var m in Volatile.Read(ref _multicast))
            if (m == destination) return true;
        return false;
    }

    /// <summary>MCAST_ADD: false (an error response) for a non-multicast address or a full list.</summary>
    public bool AddMulticast(ulong mac)
    {
        if ((mac & 0x0100_0000_0000) == 0) return false;
        lock (_gate)
        {
            var list = _multicast;
            if (Array.IndexOf(list, mac) >= 0) return true;
            if (list.Length >= MaxMulticast) return false;
            Volatile.Write(ref _multicast, [.. list, mac]);
            return true;
        }
    }

    /// <summary>MCAST_DEL: removing an address not in the list is not an error (Linux).</summary>
    public bool RemoveMulticast(ulong mac)
    {
        lock (_gate)
        {
            var list = _multicast;
            if (Array.IndexOf(list, mac) < 0) return true;
            Volatile.Write(ref _multicast, list.Where(m => m != mac).ToArray());
            return true;
        }
    }

    public void ClearMulticast()
    {
        lock (_gate) Volatile.Write(ref _multicast, []);
    }
}
