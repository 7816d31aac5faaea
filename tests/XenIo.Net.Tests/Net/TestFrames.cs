using System.Net;
using System.Net.NetworkInformation;
using PacketDotNet;

namespace XenIo.Net.Tests.Net;

/// <summary>Frames crafted with PacketDotNet: an implementation independent of ours, used as the reference.</summary>
internal static class TestFrames
{
    public static readonly PhysicalAddress MacA = PhysicalAddress.Parse("02-00-00-00-00-0A");
    public static readonly PhysicalAddress MacB = PhysicalAddress.Parse("02-00-00-00-00-0B");

    public static EthernetPacket Tcp(bool ipv6, byte[] payload, uint sequence = 1000, ushort ipId = 7, bool fin = false, bool psh = true, bool cwr = false)
    {
        var tcp = new TcpPacket(40000, 5201)
        {
            SequenceNumber = sequence,
            AcknowledgmentNumber = 55,
            WindowSize = 512,
            Acknowledgment = true,
            Push = psh,
            Finished = fin,
            CongestionWindowReduced = cwr,
            PayloadData = payload,
        };
        return Wrap(ipv6, tcp, ipId);
    }

    public static EthernetPacket Udp(bool ipv6, byte[] payload)
    {
        var udp = new UdpPacket(5353, 9999) { PayloadData = payload };
        return Wrap(ipv6, udp, 9);
    }

    private static EthernetPacket Wrap(bool ipv6, Packet transport, ushort ipId)
    {
        IPPacket ip = ipv6
            ? new IPv6Packet(IPAddress.Parse("2001:db8::1"), IPAddress.Parse("2001:db8::2")) { HopLimit = 64 }
            : new IPv4Packet(IPAddress.Parse("198.18.0.1"), IPAddress.Parse("198.18.0.2")) { Id = ipId, TimeToLive = 64 };
        ip.PayloadPacket = transport;
        var eth = new EthernetPacket(MacA, MacB, ipv6 ? EthernetType.IPv6 : EthernetType.IPv4) { PayloadPacket = ip };
        eth.UpdateCalculatedValues();
        if (ip is IPv4Packet v4) v4.UpdateIPChecksum();
        if (transport is TcpPacket t) t.UpdateTcpChecksum();
        if (transport is UdpPacket u) u.UpdateUdpChecksum();
        return eth;
    }

    public static byte[] Payload(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }
}
