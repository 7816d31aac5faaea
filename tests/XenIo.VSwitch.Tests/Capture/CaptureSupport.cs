using System.Diagnostics;
using System.Net;
using System.Net.NetworkInformation;
using PacketDotNet;
using XenIo.VSwitch.Capture;

namespace XenIo.VSwitch.Tests.Capture;

/// <summary>A capture clock that ticks by one microsecond and 789 ns per read, from a known second.</summary>
internal sealed class SteppingClock(long start = 1_700_000_000_123_456_789) : CaptureClock
{
    private long _next = start;
    public override long UnixNanoseconds()
    {
        var now = _next;
        _next += 1_000_789;
        return now;
    }
}

internal static class Tshark
{
    /// <summary>Runs tshark -r on a file and returns one row of the requested fields per packet.</summary>
    public static List<string[]> Fields(string tshark, string file, string? displayFilter, params string[] fields)
    {
        var psi = new ProcessStartInfo(tshark) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "-n", "-r", file, "-T", "fields", "-E", "separator=|" }) psi.ArgumentList.Add(a);
        if (displayFilter is not null) { psi.ArgumentList.Add("-Y"); psi.ArgumentList.Add(displayFilter); }
        foreach (var f in fields) { psi.ArgumentList.Add("-e"); psi.ArgumentList.Add(f); }
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"tshark failed ({p.ExitCode}): {err.Result}");
        return output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split('|')).ToList();
    }
}

internal static class Packets
{
    private static readonly PhysicalAddress Broadcast = PhysicalAddress.Parse("FF-FF-FF-FF-FF-FF");

    public static byte[] Icmp(int srcHost, int id, int payload = 56)
    {
        var icmp = new IcmpV4Packet(new PacketDotNet.Utils.ByteArraySegment(new byte[8 + payload])) { TypeCode = IcmpV4TypeCode.EchoRequest, Id = (ushort)id, Sequence = 1 };
        var ip = new IPv4Packet(IPAddress.Parse($"198.18.0.{srcHost}"), IPAddress.Parse("198.18.0.250")) { PayloadPacket = icmp, TimeToLive = 64 };
        var eth = new EthernetPacket(PhysicalAddress.Parse($"02-00-00-00-00-{srcHost:X2}"), Broadcast, EthernetType.IPv4) { PayloadPacket = ip };
        eth.UpdateCalculatedValues();
        ip.UpdateIPChecksum();
        icmp.UpdateIcmpChecksum();
        return eth.Bytes;
    }

    public static byte[] Udp(int srcHost, int payload = 30)
    {
        var udp = new UdpPacket(1000, 2000) { PayloadData = new byte[payload] };
        var ip = new IPv4Packet(IPAddress.Parse($"198.18.0.{srcHost}"), IPAddress.Parse("198.18.0.250")) { PayloadPacket = udp, TimeToLive = 64 };
        var eth = new EthernetPacket(PhysicalAddress.Parse($"02-00-00-00-00-{srcHost:X2}"), Broadcast, EthernetType.IPv4) { PayloadPacket = ip };
        eth.UpdateCalculatedValues();
        ip.UpdateIPChecksum();
        udp.UpdateUdpChecksum();
        return eth.Bytes;
    }

    public static byte[] Tag(byte[] frame, int vid)
    {
        var tagged = new byte[frame.Length + 4];
        frame.AsSpan(0, 12).CopyTo(tagged);
        tagged[12] = 0x81;
        tagged[14] = (byte)(vid >> 8);
        tagged[15] = (byte)vid;
        frame.AsSpan(12).CopyTo(tagged.AsSpan(16));
        return tagged;
    }
}
