using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using XenIo.Net.Frames;
using XenIo.Net.Tap;
using XenIo.Tests;
using XenIo.VSwitch.Capture;
using XenIo.VSwitch.Core;
using XenIo.VSwitch.Ports;
using Xunit;

namespace XenIo.Integration.Tests.VSwitch;

/// <summary>A trunk whose far end is the test itself: it records what leaves and injects crafted tagged frames.</summary>
internal sealed class CraftedPort(string name) : SwitchPort(name)
{
    private readonly byte[] _buffer = new byte[70000];
    public readonly ConcurrentQueue<byte[]> Sent = new();
    public override string Kind => "test";

    protected override DropReason Transmit(ReadOnlySpan<byte> frame, in FrameMetadata metadata)
    {
        Sent.Enqueue(frame.ToArray());
        return DropReason.None;
    }

    public void Inject(byte[] frame)
    {
        frame.CopyTo(_buffer, 64);
        var metadata = FrameMetadata.Plain(frame.Length);
        Deliver(_buffer, 64, ref metadata);
    }

    /// <summary>An ARP who-has <paramref name="targetIp"/>, tagged with <paramref name="vid"/>.</summary>
    public static byte[] ArpRequest(int vid, byte[] senderMac, byte[] senderIp, byte[] targetIp)
    {
        var f = new byte[46];
        f.AsSpan(0, 6).Fill(0xFF);
        senderMac.CopyTo(f, 6);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(12), 0x8100);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(14), (ushort)vid);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(16), 0x0806);
        byte[] arp = [0, 1, 8, 0, 6, 4, 0, 1];
        arp.CopyTo(f, 18);
        senderMac.CopyTo(f, 26);
        senderIp.CopyTo(f, 32);
        targetIp.CopyTo(f, 42);
        return f;
    }

    public static bool IsArpReply(byte[] f, int vid, byte[] fromIp) =>
        f.Length >= 46 && BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(12)) == 0x8100 &&
        (BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(14)) & 0xFFF) == vid &&
        BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(16)) == 0x0806 && f[25] == 2 && f.AsSpan(32, 4).SequenceEqual(fromIp);
}

public class VlanIsolationTests
{
    [SkippableFact]
    public void Access_ports_in_different_vlans_cannot_reach_each_other_while_a_trunk_carries_both()
    {
        Requires.Root();
        Requires.Tool("ping");
        var tshark = Requires.Tool("tshark");
        using var ns1 = new Netns("xvs-vl-1");
        using var ns2 = new Netns("xvs-vl-2");
        using var ns3 = new Netns("xvs-vl-3");
        using var loop = new EpollLoop("vswitch-vlan-test");
        var bridge = new Bridge("xbr-vlan");
        using var p1 = new TapPort(TapDevice.Create("xvs-vl-1"), loop) { Vlan = PortVlan.Access(10) };
        using var p2 = new TapPort(TapDevice.Create("xvs-vl-2"), loop) { Vlan = PortVlan.Access(10) };
        using var p3 = new TapPort(TapDevice.Create("xvs-vl-3"), loop) { Vlan = PortVlan.Access(20) };
        var trunk = new CraftedPort("trunk") { Vlan = PortVlan.Trunk(VlanSet.Parse("10,20")) };
        var pcap = Path.Combine(Path.GetTempPath(), $"xenio-trunk-{Environment.ProcessId}.pcap");
        using var mirror = new Mirror("trunk-capture", new PcapSink(File.Create(pcap)), new MirrorSelection(new HashSet<string> { "trunk" }));
        mirror.Attach(bridge);
        foreach (var p in new SwitchPort[] { p1, p2, p3, trunk }) bridge.AddPort(p);
        ns1.Adopt("xvs-vl-1", "198.18.20.1/24");
        ns2.Adopt("xvs-vl-2", "198.18.20.2/24");
        ns3.Adopt("xvs-vl-3", "198.18.20.3/24");

        ns1.Exec("ping", "-c", "2", "-i", "0.2", "-W", "2", "198.18.20.2");
        var (code, _) = ns1.TryExec("ping", "-c", "2", "-i", "0.2", "-W", "1", "198.18.20.3");
        Assert.NotEqual(0, code);
        var fdb = bridge.WithLock(b => b.Fdb.Snapshot());
        Assert.All(fdb.Where(e => e.Port == p1.Index || e.Port == p2.Index), e => Assert.Equal(10, e.Vlan));
        Assert.All(fdb.Where(e => e.Port == p3.Index), e => Assert.Equal(20, e.Vlan));

        byte[] testMac = [2, 0, 0, 0, 0, 0x99];
        byte[] testIp = [198, 18, 20, 99];
        trunk.Inject(CraftedPort.ArpRequest(20, testMac, testIp, [198, 18, 20, 3]));
        trunk.Inject(CraftedPort.ArpRequest(10, testMac, testIp, [198, 18, 20, 3])); // ns3 is not on VLAN 10
        trunk.Inject(CraftedPort.ArpRequest(10, testMac, testIp, [198, 18, 20, 1]));
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < TimeSpan.FromSeconds(5) &&
               !(trunk.Sent.Any(f => CraftedPort.IsArpReply(f, 20, [198, 18, 20, 3])) && trunk.Sent.Any(f => CraftedPort.IsArpReply(f, 10, [198, 18, 20, 1]))))
            Thread.Sleep(50);
        Assert.Contains(trunk.Sent, f => CraftedPort.IsArpReply(f, 20, [198, 18, 20, 3]));
        Assert.Contains(trunk.Sent, f => CraftedPort.IsArpReply(f, 10, [198, 18, 20, 1]));
        Assert.DoesNotContain(trunk.Sent, f => CraftedPort.IsArpReply(f, 10, [198, 18, 20, 3]));
        Assert.DoesNotContain(trunk.Sent, f => CraftedPort.IsArpReply(f, 20, [198, 18, 20, 1]));
        Assert.All(trunk.Sent, f => Assert.Equal(0x8100, BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(12))));

        mirror.Flush();
        try
        {
            var psi = new ProcessStartInfo(tshark) { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in new[] { "-n", "-r", pcap, "-T", "fields", "-e", "vlan.id", "-e", "arp.opcode" }) psi.ArgumentList.Add(a);
            using var p = Process.Start(psi)!;
            var rows = p.StandardOutput.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries);
            p.WaitForExit();
            Assert.Contains("20\t1", rows); // our request in
            Assert.Contains("20\t2", rows); // ns3's reply out, tagged 20
            Assert.Contains("10\t2", rows); // ns1's reply out, tagged 10
            Assert.DoesNotContain(rows, r => r.StartsWith('\t'));
        }
        finally
        {
            File.Delete(pcap);
        }
    }
}
