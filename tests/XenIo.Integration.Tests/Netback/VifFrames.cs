using System.Buffers.Binary;
using XenIo.Hypervisor.Abi;
using XenIo.TestPeer.Netback;

namespace XenIo.Integration.Tests.Netback;

/// <summary>Frames the vif tests send, and the receive loop that checks them.</summary>
public static class VifFrames
{
    public const ushort TestEtherType = 0x88B5; // IEEE local experimental

    public static ulong Mac(string text) => Convert.ToUInt64(text.Replace(":", ""), 16);

    public static byte[] Ethernet(string dst, string src, ushort etherType, ReadOnlySpan<byte> payload)
    {
        var frame = new byte[14 + payload.Length];
        WriteMac(frame, dst);
        WriteMac(frame.AsSpan(6), src);
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(12), etherType);
        payload.CopyTo(frame.AsSpan(14));
        return frame;
    }

    public static byte[] Random(string dst, string src, int length, Random rng)
    {
        var payload = new byte[length - 14];
        rng.NextBytes(payload);
        return Ethernet(dst, src, TestEtherType, payload);
    }

    private static void WriteMac(Span<byte> into, string mac)
    {
        var parts = mac.Split(':');
        for (var i = 0; i < 6; i++) into[i] = Convert.ToByte(parts[i], 16);
    }

    /// <summary>An IPv4 (or IPv6) TCP segment of <paramref name="payload"/> bytes: what a TSO frame looks like.</summary>
    public static byte[] Tcp(string dst, string src, bool v6, string srcIp, string dstIp, int payload, Random rng, ushort srcPort = 40000)
    {
        var l3 = v6 ? 40 : 20;
        var frame = new byte[14 + l3 + 20 + payload];
        WriteMac(frame, dst);
        WriteMac(frame.AsSpan(6), src);
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(12), v6 ? (ushort)0x86DD : (ushort)0x0800);
        var ip = frame.AsSpan(14);
        if (v6)
        {
            ip[0] = 0x60;
            BinaryPrimitives.WriteUInt16BigEndian(ip[4..], (ushort)(20 + payload));
            ip[6] = 6;
            ip[7] = 64;
            System.Net.IPAddress.Parse(srcIp).GetAddressBytes().CopyTo(ip[8..]);
            System.Net.IPAddress.Parse(dstIp).GetAddressBytes().CopyTo(ip[24..]);
        }
        else
        {
            ip[0] = 0x45;
            BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)Math.Min(0xFFFF, 40 + payload));
            ip[8] = 64;
            ip[9] = 6;
            System.Net.IPAddress.Parse(srcIp).GetAddressBytes().CopyTo(ip[12..]);
            System.Net.IPAddress.Parse(dstIp).GetAddressBytes().CopyTo(ip[16..]);
        }
        var tcp = frame.AsSpan(14 + l3);
        BinaryPrimitives.WriteUInt16BigEndian(tcp, srcPort);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[2..], 5201);
        tcp[12] = 5 << 4;
        tcp[13] = 0x18;
        rng.NextBytes(frame.AsSpan(14 + l3 + 20));
        return frame;
    }

    /// <summary>An IPv4 UDP datagram (a flow per source port).</summary>
    public static byte[] Udp(string dst, string src, string srcIp, string dstIp, ushort srcPort, int payload, Random rng)
    {
        var frame = new byte[14 + 20 + 8 + payload];
        WriteMac(frame, dst);
        WriteMac(frame.AsSpan(6), src);
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(12), 0x0800);
        var ip = frame.AsSpan(14);
        ip[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)(28 + payload));
        ip[8] = 64;
        ip[9] = 17;
        System.Net.IPAddress.Parse(srcIp).GetAddressBytes().CopyTo(ip[12..]);
        System.Net.IPAddress.Parse(dstIp).GetAddressBytes().CopyTo(ip[16..]);
        BinaryPrimitives.WriteUInt16BigEndian(ip[20..], srcPort);
        BinaryPrimitives.WriteUInt16BigEndian(ip[22..], 9);
        BinaryPrimitives.WriteUInt16BigEndian(ip[24..], (ushort)(8 + payload));
        rng.NextBytes(frame.AsSpan(42));
        return frame;
    }

    /// <summary>Sends, reaping TX responses to free slots; fails the test if the ring stays full.</summary>
    public static void Send(TestNetfront front, byte[] frame, NetTxFlags flags = NetTxFlags.None, NetifExtraInfo? gso = null, int fragment = 4096)
    {
        var deadline = DateTime.UtcNow + VifHarness.Limit;
        while (true)
        {
            front.ReapTx();
            if (front.TrySend(frame, flags, gso, fragment)) return;
            if (DateTime.UtcNow > deadline) throw new TimeoutException("TX ring stayed full");
            front.WaitTx(20);
        }
    }

    public readonly record struct Received(byte[] Frame, NetRxFlags Flags, NetifExtraInfo Gso, bool Error);

    /// <summary>The next frame the frontend gets (RX buffers reposted as they are used); null after <paramref name="timeoutMs"/>.</summary>
    public static Received? Receive(TestNetfront front, int timeoutMs = 30_000, Func<byte[], bool>? accept = null)
    {
        var buffer = new byte[70_000];
        var deadline = DateTime.UtcNow.AddMilliseconds(timeoutMs);
        while (true)
        {
            while (front.TryReceive(buffer, out var length, out var flags, out var gso, out var error))
            {
                front.PostRx();
                var frame = buffer[..length];
                if (accept is null || accept(frame)) return new Received(frame, flags, gso, error);
            }
            front.PostRx();
            if (DateTime.UtcNow > deadline) return null;
            front.WaitRx(20);
        }
    }

    public static NetifExtraInfo GsoExtra(bool v6, ushort size) => new()
    {
        Type = NetifExtraType.Gso,
        GsoType = v6 ? NetifGsoType.TcpV6 : NetifGsoType.TcpV4,
        GsoSize = size,
    };
}
