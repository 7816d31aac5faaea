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

    /// <summary>
    /// Two Linux kernel vxlans (VNI 42), each in its own namespace behind its own underlay link to nsu,
    /// where our VXLAN port lists both as remotes; nst is a host on a TAP port of the same bridge. Once
    /// the port has heard from both, unicast to one remote's host reaches that remote only (the other
    /// kernel vxlan's receive counter stays still), broadcasts still reach both, and the learned table
    /// names each MAC's remote.
    /// </summary>
    [SkippableFact]
    public void A_vxlan_port_with_two_kernel_remotes_sends_known_unicast_to_one_and_floods_the_rest()
    {
        Requires.Root();
        Requires.Tool("ping");
        using var nsu = new Netns("xvs-v2-u");
        using var nsa = new Netns("xvs-v2-a");
        using var nsb = new Netns("xvs-v2-b");
        using var nst = new Netns("xvs-v2-t");
        var remotes = new List<VxlanRemote>();
        foreach (var (ns, side, net) in new[] { (nsa, "a", 32), (nsb, "b", 33) })
        {
            Netns.Run("ip", "link", "add", $"xvs-u{side}", "netns", nsu.Name, "type", "veth", "peer", "name", $"xvs-l{side}", "netns", ns.Name);
            nsu.Exec("ip", "addr", "add", $"198.18.{net}.1/24", "dev", $"xvs-u{side}");
            nsu.Exec("ip", "link", "set", $"xvs-u{side}", "up");
            ns.Exec("ip", "addr", "add", $"198.18.{net}.2/24", "dev", $"xvs-l{side}");
            ns.Exec("ip", "link", "set", $"xvs-l{side}", "up");
            ns.Exec("ip", "link", "add", $"xvs-vx{side}", "type", "vxlan", "id", "42", "local", $"198.18.{net}.2", "remote", $"198.18.{net}.1",
                "dstport", "4789", "dev", $"xvs-l{side}");
            ns.Exec("ip", "addr", "add", side == "a" ? "198.18.34.2/24" : "198.18.34.3/24", "dev", $"xvs-vx{side}");
            ns.Exec("ip", "link", "set", $"xvs-vx{side}", "up");
            remotes.Add(new IPEndPoint(IPAddress.Parse($"198.18.{net}.2"), 4789));
        }

        // Bound to any address of nsu: each remote is reached over its own link, from that link's address.
        var socket = NetnsSocket.Create(nsu.Name, () =>
        {
            var s = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            s.Bind(new IPEndPoint(IPAddress.Any, 4789));
            return s;
        });
        using var loop = new EpollLoop("vswitch-vxlan2-test");
        var bridge = new Bridge("xbr-v2");
        using var vxlan = new VxlanPort("vx0", new VxlanPortOptions(new IPEndPoint(IPAddress.Any, 4789), 42, remotes) { BoundSocket = socket });
        using var tap = new TapPort(TapDevice.Create("xvs-v2-t"), loop);
        bridge.AddPort(vxlan);
        bridge.AddPort(tap);
        // No IPv6 on the host: its neighbour discovery and MLD multicasts would reach both remotes mid-count.
        nst.Exec("sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1");
        nst.Adopt("xvs-v2-t", "198.18.34.1/24");
        nst.Exec("ip", "link", "set", "xvs-v2-t", "mtu", "1450");

        // Both answer once (ARP and echo replies teach the port where each MAC is).
        nst.Exec("ping", "-c", "2", "-i", "0.2", "-W", "2", "198.18.34.2");
        nst.Exec("ping", "-c", "2", "-i", "0.2", "-W", "2", "198.18.34.3");
        var learned = vxlan.Learned.Snapshot(vxlan.Options);
        Assert.Contains(learned, e => e.Remote.EndPoint.Equals(remotes[0].EndPoint) && e.Mac == Mac(nsa, "xvs-vxa") && e.Vni == 42);
        Assert.Contains(learned, e => e.Remote.EndPoint.Equals(remotes[1].EndPoint) && e.Mac == Mac(nsb, "xvs-vxb") && e.Vni == 42);

        // Twenty echo requests to a: a's vxlan gets them all, b's hears nothing of them.
        var (aBefore, bBefore) = (RxPackets(nsa, "xvs-vxa"), RxPackets(nsb, "xvs-vxb"));
        nst.Exec("ping", "-c", "20", "-i", "0.05", "-W", "2", "198.18.34.2");
        Assert.True(RxPackets(nsa, "xvs-vxa") - aBefore >= 20);
        Assert.Equal(bBefore, RxPackets(nsb, "xvs-vxb"));

        // A broadcast still goes to both.
        (aBefore, bBefore) = (RxPackets(nsa, "xvs-vxa"), RxPackets(nsb, "xvs-vxb"));
        nst.TryExec("ping", "-b", "-c", "2", "-i", "0.2", "-W", "1", "198.18.34.255");
        Assert.True(RxPackets(nsa, "xvs-vxa") - aBefore >= 2);
        Assert.True(RxPackets(nsb, "xvs-vxb") - bBefore >= 2);
    }

    private static long RxPackets(Netns ns, string dev) => long.Parse(ns.Exec("cat", $"/sys/class/net/{dev}/statistics/rx_packets").Trim(), System.Globalization.CultureInfo.InvariantCulture);

    private static ulong Mac(Netns ns, string dev) => Convert.ToUInt64(ns.Exec("cat", $"/sys/class/net/{dev}/address").Trim().Replace(":", ""), 16);
}
