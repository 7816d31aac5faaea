namespace XenIo.Net.Frames;

/// <summary>The EtherType, IP protocol and header sizes the data plane looks at.</summary>
public static class EtherTypes
{
    public const ushort IPv4 = 0x0800;
    public const ushort Arp = 0x0806;
    public const ushort Vlan = 0x8100;
    /// <summary>802.1ad service tag (QinQ outer tag); Linux strips a priority tag of this TPID as of 0x8100.</summary>
    public const ushort ServiceVlan = 0x88A8;
    public const ushort IPv6 = 0x86DD;

    public const byte Tcp = 6;
    public const byte Udp = 17;

    public const int EthernetHeaderLength = 14;
    public const int VlanTagLength = 4;
    public const int MacLength = 6;
    /// <summary>A frame shorter than this is a runt: two MACs and an EtherType.</summary>
    public const int MinFrameLength = EthernetHeaderLength;
    /// <summary>The largest frame the data plane carries: IP's 64 KiB plus an Ethernet header and a tag.</summary>
    public const int MaxFrameLength = 65535 + EthernetHeaderLength + VlanTagLength;
}
