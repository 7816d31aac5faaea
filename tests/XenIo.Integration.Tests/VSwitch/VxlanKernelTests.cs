using System.Net;
using System.Net.Sockets;
using XenIo.Net.Tap;
using XenIo.Tests;
using XenIo.VSwitch.Core;
using XenIo.VSwitch.Ports;
using Xunit;

namespace XenIo.Integration.Tests.VSwitch;

public class VxlanKernelTests
{
    /// <summary>
    /// nsv holds a Linux kernel vxlan interface (VNI 42) over a veth whose other end is in nsu, where our
    /// VXLAN port's socket lives; nst is a host on a TAP port of the same bridge. nst pings the kernel
    /// vxlan's address through our switch and tunnel.
    /// </summary>
    [SkippableFact]
    public void A_vxlan_port_exchanges_frames_with_a_kernel_vxlan_and_drops_unconfigured_remotes()
    {
        Requires.Root();
        Requires.Tool("ping");
        using var nsu = new Netns("xvs-vx-u");
        using var nsv = new Netns("xvs-vx-v");
        using var nst = new Netns("xvs-vx-t");
        Netns.Run("ip", "link", "add", "xvs-vxu", "netns", nsu.Name, "type", "veth", "peer", "name", "xvs-vxv", "netns", nsv.Name);
        nsu.Exec("ip", "addr", "add", "198.18.30.1/24", "dev", "xvs-vxu");
        nsu.Exec("ip", "link", "set", "xvs-vxu", "up");
        nsv.Exec("ip", "addr", "add", "198.18.30.2/24", "dev", "xvs-vxv");
        nsv.Exec("ip", "addr", "add", "198.18.30.3/24", "dev", "xvs-vxv");
        nsv.Exec("ip", "link", "set", "xvs-vxv", "up");
        nsv.Exec("ip", "link", "add", "xvs-vx", "type", "vxlan", "id", "42", "local", "198.18.30.2", "remote", "198.18.30.1", "dstport", "4789", "dev", "xvs-vxv");
        nsv.Exec("ip", "addr", "add", "198.18.31.2/24", "dev", "xvs-vx");
        nsv.Exec("ip", "link", "set", "xvs-vx", "up");

        var socket = NetnsSocket.Create(nsu.Name, () =>
        {
            var s = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            s.Bind(new IPEndPoint(IPAddress.Parse("198.18.30.1"), 4789));
            return s;
        });
        using var loop = new EpollLoop("vswitch-vxlan-test");
        var bridge = new Bridge("xbr-vx");
        using var vxlan = new VxlanPort("vx0", new VxlanPortOptions(new IPEndPoint(IPAddress.Parse("198.18.30.1"), 4789), 42, [new IPEndPoint(IPAddress.Parse("198.18.30.2"), 4789)]) { BoundSocket = socket });
        using var tap = new TapPort(TapDevice.Create("xvs-vx-t"), loop);
        bridge.AddPort(vxlan);
        bridge.AddPort(tap);
        nst.Adopt("xvs-vx-t", "198.18.31.1/24");
        nst.Exec("ip", "link", "set", "xvs-vx-t", "mtu", "1450");

        nst.Exec("ping", "-c", "3", "-i", "0.2", "-W", "2", "198.18.31.2");
        Assert.True(vxlan.Counters.RxPackets >= 3);
        Assert.True(vxlan.Counters.TxPackets >= 3);

        // A VXLAN packet with our VNI from an address that is not a configured remote.
        using var stranger = NetnsSocket.Create(nsv.Name, () =>
        {
            var s = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            s.Bind(new IPEndPoint(IPAddress.Parse("198.18.30.3"), 0));
            return s;
        });
        var before = tap.Counters.TxPackets;
        var packet = new byte[8 + 60];
        VxlanHeader.Write(packet, 42);
        packet.AsSpan(8, 6).Fill(0xFF);
        packet[14 + 5] = 0x77;
        packet[14] = 2;
        stranger.SendTo(packet, new IPEndPoint(IPAddress.Parse("198.18.30.1"), 4789));
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (vxlan.Counters.Drops(DropReason.UnknownPeer) == 0 && DateTime.UtcNow < deadline) Thread.Sleep(20);
        Assert.Equal(1, vxlan.Counters.Drops(DropReason.UnknownPeer));
    }
}
