using System.Net;
using System.Net.Sockets;
using XenIo.VSwitch.Core;
using XenIo.VSwitch.Ports;
using XenIo.VSwitch.Tests.Core;
using Xunit;

namespace XenIo.VSwitch.Tests.Ports;

public class VxlanPortTests
{
    [Fact]
    public void Header_bytes_follow_rfc_7348()
    {
        var header = new byte[8];
        VxlanHeader.Write(header, 0x123456);
        Assert.Equal(new byte[] { 0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0 }, header);
        Assert.Equal(0x123456, VxlanHeader.ReadVni(header));
        Assert.Equal(-1, VxlanHeader.ReadVni(new byte[] { 0, 0, 0, 0, 0x12, 0x34, 0x56, 0 }));
        Assert.Equal(-1, VxlanHeader.ReadVni(new byte[7]));
    }

    internal static Socket Udp(string address)
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp) { ReceiveTimeout = 10_000 };
        s.Bind(new IPEndPoint(IPAddress.Parse(address), 0));
        return s;
    }

    internal static Socket Udp6()
    {
        var s = new Socket(AddressFamily.InterNetworkV6, SocketType.Dgram, ProtocolType.Udp) { ReceiveTimeout = 10_000 };
        s.Bind(new IPEndPoint(IPAddress.IPv6Loopback, 0));
        return s;
    }

    internal static byte[] Packet(int vni, byte[] frame, byte flags = 0x08)
    {
        var p = new byte[8 + frame.Length];
        VxlanHeader.Write(p, vni);
        p[0] = flags;
        frame.CopyTo(p, 8);
        return p;
    }

    [Fact]
    public void Frames_go_to_the_remote_and_only_configured_remotes_with_our_vni_come_in()
    {
        using var remote = Udp("127.0.0.1");
        using var stranger = Udp("127.0.0.2");
        var bridge = new Bridge("br0");
        var local = new QueuePort("local");
        using var vxlan = new VxlanPort("vx0", new VxlanPortOptions(new IPEndPoint(IPAddress.Loopback, 0), 42, [(IPEndPoint)remote.LocalEndPoint!]));
        bridge.AddPort(local);
        bridge.AddPort(vxlan);
        Assert.True(vxlan.SplitHorizon);
        Assert.Equal(1450, vxlan.Mtu);
        var to = vxlan.LocalEndPoint;

        var outbound = Frame.Build(Frame.Broadcast, Frame.Mac(1));
        local.Inject(outbound);
        var received = new byte[2000];
        var n = remote.Receive(received);
        Assert.Equal(Packet(42, outbound), received[..n]);

        var inbound = Frame.Build(Frame.Broadcast, Frame.Mac(2));
        remote.SendTo(Packet(42, inbound), to);
        Assert.Equal(inbound, local.Next());

        stranger.SendTo(Packet(42, Frame.Build(Frame.Broadcast, Frame.Mac(3))), to);
        remote.SendTo(Packet(43, Frame.Build(Frame.Broadcast, Frame.Mac(4))), to);
        remote.SendTo(Packet(42, Frame.Build(Frame.Broadcast, Frame.Mac(5)), flags: 0), to);
        remote.SendTo(new byte[3], to);
        var marker = Frame.Build(Frame.Broadcast, Frame.Mac(6));
        remote.SendTo(Packet(42, marker), to);
        Assert.Equal(marker, local.Next()); // everything between was dropped
        Assert.Equal(2, vxlan.Counters.Drops(DropReason.UnknownPeer));
        Assert.Equal(2, vxlan.Counters.Drops(DropReason.Malformed));
        Assert.Equal(2, vxlan.Counters.RxPackets);
    }

    [Fact]
    public void Each_remote_has_its_own_vni()
    {
        using var r1 = Udp("127.0.0.1");
        using var r2 = Udp("127.0.0.3");
        var bridge = new Bridge("br0");
        var local = new QueuePort("local");
        using var vxlan = new VxlanPort("vx0", new VxlanPortOptions(new IPEndPoint(IPAddress.Loopback, 0), 100,
            [(IPEndPoint)r1.LocalEndPoint!, new VxlanRemote((IPEndPoint)r2.LocalEndPoint!, 200)]));
        bridge.AddPort(local);
        bridge.AddPort(vxlan);
        var f = Frame.Build(Frame.Broadcast, Frame.Mac(1));
        local.Inject(f);
        var buffer = new byte[2000];
        Assert.Equal(Packet(100, f), buffer[..r1.Receive(buffer)]);
        Assert.Equal(Packet(200, f), buffer[..r2.Receive(buffer)]);
        r2.SendTo(Packet(100, Frame.Build(Frame.Broadcast, Frame.Mac(2))), vxlan.LocalEndPoint); // r1's VNI from r2
        var good = Frame.Build(Frame.Broadcast, Frame.Mac(3));
        r2.SendTo(Packet(200, good), vxlan.LocalEndPoint);
        Assert.Equal(good, local.Next());
        Assert.Equal(1, vxlan.Counters.Drops(DropReason.UnknownPeer));
    }

    [Fact]
    public void Over_ipv6_the_mtu_leaves_room_for_70_bytes_of_outer_headers_and_datagrams_are_not_fragmented()
    {
        using var remote = Udp6();
        var bridge = new Bridge("br0");
        var local = new QueuePort("local");
        using var vxlan = new VxlanPort("vx6", new VxlanPortOptions(new IPEndPoint(IPAddress.IPv6Loopback, 0), 42, [(IPEndPoint)remote.LocalEndPoint!]));
        bridge.AddPort(local);
        bridge.AddPort(vxlan);
        Assert.Equal(1430, vxlan.Mtu); // as Linux's vxlan over IPv6: 1500 - 40 - 8 - 8 - 14
        var option = new byte[sizeof(int)];
        Assert.Equal(sizeof(int), vxlan.UdpSocket.GetRawSocketOption(41, 62, option)); // IPPROTO_IPV6, IPV6_DONTFRAG
        Assert.Equal(1, BitConverter.ToInt32(option));

        var outbound = Frame.Build(Frame.Broadcast, Frame.Mac(1));
        local.Inject(outbound);
        var received = new byte[2000];
        Assert.Equal(Packet(42, outbound), received[..remote.Receive(received)]);
    }
}

[Collection(ProcessWide.Name)]
public class VxlanPortDescriptorTests
{
    [Fact]
    public void A_vxlan_port_whose_bind_fails_says_where_and_leaks_no_descriptor()
    {
        using var taken = VxlanPortTests.Udp("127.0.0.1");
        var local = (IPEndPoint)taken.LocalEndPoint!;
        var options = new VxlanPortOptions(local, 42, [new IPEndPoint(IPAddress.Loopback, VxlanHeader.DefaultPort)]);
        var left = ProcessWide.DescriptorsLeftBy(20, () =>
        {
            var e = Assert.Throws<IOException>(() => new VxlanPort("vx0", options));
            Assert.Contains(local.ToString(), e.Message);
        });
        Assert.Equal(0, left);
    }
}
