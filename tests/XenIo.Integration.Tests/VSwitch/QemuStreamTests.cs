using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using XenIo.Tests;
using XenIo.VSwitch.Core;
using XenIo.VSwitch.Ports;
using Xunit;

namespace XenIo.Integration.Tests.VSwitch;

/// <summary>
/// QEMU itself on the other end of stream ports: <c>-machine none</c> boots nothing, and a hub joins its
/// two <c>-netdev stream</c> backends, so QEMU relays every frame from one of our ports to the other
/// with its own framing code. One QEMU netdev is a server our port dials (with reconnect); the other
/// dials our listening port.
/// </summary>
public sealed class QemuStreamTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("xenio-qemu").FullName;
    private Process? _qemu;

    public void Dispose()
    {
        StopQemu();
        Directory.Delete(_dir, recursive: true);
    }

    private void StartQemu(string qemu, string serverPath, string clientPath)
    {
        var psi = new ProcessStartInfo(qemu) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in new[]
        {
            "-machine", "none", "-nodefaults", "-display", "none",
            "-netdev", $"stream,id=a,server=on,addr.type=unix,addr.path={serverPath}",
            "-netdev", "hubport,id=ha,hubid=0,netdev=a",
            "-netdev", $"stream,id=b,server=off,addr.type=unix,addr.path={clientPath}",
            "-netdev", "hubport,id=hb,hubid=0,netdev=b",
        }) psi.ArgumentList.Add(a);
        _qemu = Process.Start(psi)!;
        _qemu.ErrorDataReceived += (_, _) => { };
        _qemu.BeginErrorReadLine();
    }

    private void StopQemu()
    {
        if (_qemu is null) return;
        if (!_qemu.HasExited) _qemu.Kill();
        _qemu.WaitForExit();
        _qemu.Dispose();
        _qemu = null;
    }

    private static void WaitUntil(Func<bool> condition, string what, int seconds = 15)
    {
        var sw = Stopwatch.StartNew();
        while (!condition())
        {
            if (sw.Elapsed > TimeSpan.FromSeconds(seconds)) throw new TimeoutException(what);
            Thread.Sleep(20);
        }
    }

    private static byte[] Frame(int src, int payload)
    {
        var f = new byte[14 + payload];
        f.AsSpan(0, 6).Fill(0xFF);
        f[6] = 2;
        f[11] = (byte)src;
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(12), 0x88B5);
        new Random(src + payload).NextBytes(f.AsSpan(14));
        return f;
    }

    private static byte[] Expect(CraftedPort port, Func<byte[], bool> match, string what)
    {
        byte[]? found = null;
        WaitUntil(() => (found = port.Sent.FirstOrDefault(match)) is not null, what);
        return found!;
    }

    [SkippableFact]
    public void Frames_cross_qemu_between_two_stream_ports_and_the_dialing_port_reconnects()
    {
        var qemu = Requires.Tool("qemu-system-x86_64");
        var serverPath = Path.Combine(_dir, "qemu-server.sock");
        var listenPath = Path.Combine(_dir, "xenio-listen.sock");
        var br1 = new Bridge("xbr-q1");
        var br2 = new Bridge("xbr-q2");
        var c1 = new CraftedPort("c1");
        var c2 = new CraftedPort("c2");
        using var dialer = new StreamPort("s1", new StreamPortOptions(new UnixDomainSocketEndPoint(serverPath), StreamRole.Connect) { ReconnectDelay = TimeSpan.FromMilliseconds(100) }) { Mtu = 9000 };
        using var listener = new StreamPort("s2", new StreamPortOptions(new UnixDomainSocketEndPoint(listenPath), StreamRole.Listen)) { Mtu = 9000 };
        c1.Mtu = c2.Mtu = 9000;
        br1.AddPort(c1);
        br1.AddPort(dialer);
        br2.AddPort(listener);
        br2.AddPort(c2);
        WaitUntil(() => File.Exists(listenPath), "listening socket");

        StartQemu(qemu, serverPath, listenPath);
        WaitUntil(() => dialer.Connected && listener.Connected, "QEMU connected to both ports");

        var small = Frame(1, 46);
        var jumbo = Frame(2, 8000);
        c1.Inject(small);
        c1.Inject(jumbo);
        Assert.Equal(small, Expect(c2, f => f[11] == 1, "small frame through QEMU"));
        Assert.Equal(jumbo, Expect(c2, f => f[11] == 2, "jumbo frame through QEMU"));
        var back = Frame(3, 100);
        c2.Inject(back);
        Assert.Equal(back, Expect(c1, f => f[11] == 3, "frame back through QEMU"));

        // QEMU goes away and comes back: our dialing port reconnects by itself, our listener takes the new peer.
        StopQemu();
        WaitUntil(() => !dialer.Connected && !listener.Connected, "ports saw QEMU go");
        StartQemu(qemu, serverPath, listenPath);
        WaitUntil(() => dialer.Connected && listener.Connected, "QEMU reconnected");
        var after = Frame(4, 60);
        // QEMU may accept before its hub is wired: retry until one gets through.
        WaitUntil(() =>
        {
            c1.Inject(after);
            Thread.Sleep(100);
            return c2.Sent.Any(f => f[11] == 4);
        }, "frame after reconnect");
        Assert.True(dialer.Connections >= 2);
        Assert.True(listener.Connections >= 2);
    }
}
