using System.Buffers.Binary;
using XenIo.Net.Frames;
using XenIo.Net.Tap;
using XenIo.Tests;
using Xunit;

namespace XenIo.Net.Tests.Net;

public class TapDeviceTests
{
    private sealed class Reader(TapDevice tap) : IReadinessHandler
    {
        private readonly byte[] _header = new byte[VirtioNetHeader.Size];
        private readonly byte[] _frame = new byte[70000];
        public readonly System.Collections.Concurrent.BlockingCollection<(VirtioNetHeader, byte[])> Frames = [];
        public int Batches;

        public void OnReadable()
        {
            Batches++;
            int n;
            while ((n = tap.Read(_header, _frame)) >= 0)
            {
                VirtioNetHeader.TryRead(_header, out var h);
                Frames.Add((h, _frame.AsSpan(0, n).ToArray()));
            }
        }
    }

    [SkippableFact]
    public void Arp_request_written_to_a_tap_is_answered_by_the_kernel_and_read_back_through_epoll()
    {
        Requires.Root();
        using var ns = new Netns("xnt-tap1");
        using var tap = TapDevice.Create("xnt-tap1");
        Assert.Equal("xnt-tap1", tap.Name);
        Assert.True(tap.Offloads);
        Netns.Run("ip", "link", "set", tap.Name, "netns", ns.Name);
        ns.Exec("ip", "addr", "add", "198.18.7.1/24", "dev", tap.Name);
        ns.Exec("ip", "link", "set", tap.Name, "up");

        using var loop = new EpollLoop("tap-test");
        var reader = new Reader(tap);
        loop.Add(tap.Fd, reader);

        // ARP who-has 198.18.7.1 tell 198.18.7.2, from 02:00:00:00:00:0a
        var arp = new byte[42];
        arp.AsSpan(0, 6).Fill(0xFF);
        byte[] mac = [2, 0, 0, 0, 0, 0x0A];
        mac.CopyTo(arp, 6);
        BinaryPrimitives.WriteUInt16BigEndian(arp.AsSpan(12), EtherTypes.Arp);
        byte[] body = [0, 1, 8, 0, 6, 4, 0, 1];
        body.CopyTo(arp, 14);
        mac.CopyTo(arp, 22);
        byte[] senderIp = [198, 18, 7, 2];
        senderIp.CopyTo(arp, 28);
        byte[] targetIp = [198, 18, 7, 1];
        targetIp.CopyTo(arp, 38);
        Assert.Equal(42, tap.Write(new byte[VirtioNetHeader.Size], arp));

        var deadline = DateTime.UtcNow.AddSeconds(10);
        byte[]? reply = null;
        while (reply is null && reader.Frames.TryTake(out var item, deadline - DateTime.UtcNow))
        {
            var f = item.Item2;
            if (BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(12)) == EtherTypes.Arp && f[21] == 2) reply = f;
        }
        Assert.NotNull(reply);
        Assert.Equal(mac, reply.AsSpan(0, 6).ToArray());      // to us
        Assert.Equal(targetIp, reply.AsSpan(28, 4).ToArray()); // sender is the kernel's address
        Assert.True(reader.Batches >= 1);
        loop.Remove(tap.Fd);
    }

    [SkippableFact]
    public void Reading_an_idle_tap_returns_eagain_instead_of_blocking()
    {
        Requires.Root();
        using var tap = TapDevice.Create("");
        Assert.StartsWith("tap", tap.Name);
        Assert.Equal(-11, tap.Read(new byte[12], new byte[2000]));
    }

    [Fact]
    public void Long_names_are_refused()
    {
        Assert.Throws<ArgumentException>(() => TapDevice.Create("a-name-that-is-too-long"));
    }

    private static string SysMtu(string name) => File.ReadAllText($"/sys/class/net/{name}/mtu").Trim();

    [SkippableFact]
    public void The_mtu_is_set_on_the_interface_and_not_on_another_of_its_name_once_it_has_moved()
    {
        Requires.Root("creates TAP interfaces and a namespace");
        using var ns = new Netns("xnt-mtu");
        using var tap = TapDevice.Create("xnt-mtu1");
        tap.SetMtu(9000);
        Assert.Equal("9000", SysMtu("xnt-mtu1"));
        tap.SetMtu(4000);
        Assert.Equal("4000", SysMtu("xnt-mtu1"));
        var refused = Assert.Throws<IOException>(() => tap.SetMtu(70000));
        Assert.Contains("xnt-mtu1", refused.Message);
        Assert.Equal("4000", SysMtu("xnt-mtu1"));

        // Moved away, the name here may be another interface's: that one is left alone.
        Netns.Run("ip", "link", "set", tap.Name, "netns", ns.Name);
        using var other = TapDevice.Create("xnt-mtu1");
        var moved = Assert.Throws<IOException>(() => tap.SetMtu(2000));
        Assert.Contains("namespace", moved.Message);
        Assert.Equal("1500", SysMtu("xnt-mtu1"));
        Assert.Contains("mtu 4000", ns.Exec("ip", "link", "show", "xnt-mtu1"));
    }
}
