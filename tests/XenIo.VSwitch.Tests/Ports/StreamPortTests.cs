using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using XenIo.VSwitch.Core;
using XenIo.VSwitch.Ports;
using XenIo.VSwitch.Tests.Core;
using Xunit;

namespace XenIo.VSwitch.Tests.Ports;

public class StreamFramingTests
{
    [Theory]
    [InlineData(new byte[] { }, StreamFrameStatus.NeedMore, 0)]
    [InlineData(new byte[] { 0, 0, 0 }, StreamFrameStatus.NeedMore, 0)]
    [InlineData(new byte[] { 0, 0, 0, 2, 0xAA }, StreamFrameStatus.NeedMore, 2)]
    [InlineData(new byte[] { 0, 0, 0, 2, 0xAA, 0xBB }, StreamFrameStatus.Frame, 2)]
    [InlineData(new byte[] { 0, 0, 0, 0 }, StreamFrameStatus.Malformed, 0)]
    [InlineData(new byte[] { 0, 1, 0x10, 0x01 }, StreamFrameStatus.Malformed, 0)]   // 69,633
    [InlineData(new byte[] { 0xFF, 0xFF, 0xFF, 0xFF }, StreamFrameStatus.Malformed, 0)]
    [InlineData(new byte[] { 0, 1, 0x10, 0x00 }, StreamFrameStatus.NeedMore, 69632)] // the largest QEMU takes
    public void Reads_the_big_endian_length_prefix(byte[] input, StreamFrameStatus status, int length)
    {
        Assert.Equal(status, StreamFraming.TryRead(input, out var n));
        Assert.Equal(length, n);
    }
}

public sealed class StreamPortTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("xenio-stream").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    internal static byte[] Prefixed(params byte[][] frames)
    {
        var output = new List<byte>();
        foreach (var f in frames)
        {
            var prefix = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(prefix, (uint)f.Length);
            output.AddRange(prefix);
            output.AddRange(f);
        }
        return [.. output];
    }

    internal static byte[] ReadFrame(Socket socket)
    {
        var prefix = ReadExactly(socket, 4);
        return ReadExactly(socket, (int)BinaryPrimitives.ReadUInt32BigEndian(prefix));
    }

    internal static byte[] ReadExactly(Socket socket, int n)
    {
        var buffer = new byte[n];
        var got = 0;
        while (got < n)
        {
            var r = socket.Receive(buffer, got, n - got, SocketFlags.None);
            if (r == 0) throw new EndOfStreamException();
            got += r;
        }
        return buffer;
    }

    internal static Socket ConnectUnix(string path)
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = 10_000 };
        QueuePort.WaitUntil(() => File.Exists(path));
        s.Connect(new UnixDomainSocketEndPoint(path));
        return s;
    }

    [Fact]
    public void Frames_cross_both_ways_and_a_bad_length_closes_only_that_connection()
    {
        var path = Path.Combine(_dir, "s.sock");
        var bridge = new Bridge("br0");
        var local = new QueuePort("local");
        using var stream = new StreamPort("qemu0", new StreamPortOptions(new UnixDomainSocketEndPoint(path), StreamRole.Listen)) { Mtu = 9000 };
        local.Mtu = 9000;
        bridge.AddPort(local);
        bridge.AddPort(stream);

        using (var client = ConnectUnix(path))
        {
            QueuePort.WaitUntil(() => stream.Connected);
            var a = Frame.Build(Frame.Broadcast, Frame.Mac(1), payload: 100);
            var b = Frame.Build(Frame.Broadcast, Frame.Mac(2), payload: 3000);
            var bytes = Prefixed(a, b);
            // dribble it in uneven pieces so frames straddle reads
            for (var i = 0; i < bytes.Length; i += 777) client.Send(bytes.AsSpan(i, Math.Min(777, bytes.Length - i)));
            Assert.Equal(a, local.Next());
            Assert.Equal(b, local.Next());

            var c = Frame.Build(Frame.Mac(1), Frame.Mac(3), payload: 60);
            local.Inject(c);
            Assert.Equal(c, ReadFrame(client));

            client.Send(new byte[] { 0, 1, 0x10, 0x01 }); // 69,633: more than QEMU ever sends
            Assert.Throws<EndOfStreamException>(() => ReadFrame(client));
        }
        Assert.Equal(1, stream.MalformedClosures);
        QueuePort.WaitUntil(() => !stream.Connected);

        using var again = ConnectUnix(path);
        QueuePort.WaitUntil(() => stream.Connected);
        var d = Frame.Build(Frame.Broadcast, Frame.Mac(4));
        again.Send(Prefixed(d));
        Assert.Equal(d, local.Next());
        Assert.Equal(2, stream.Connections);
    }

    [Fact]
    public void A_second_peer_is_refused_while_one_is_served()
    {
        var path = Path.Combine(_dir, "one.sock");
        var bridge = new Bridge("br0");
        using var stream = new StreamPort("qemu0", new StreamPortOptions(new UnixDomainSocketEndPoint(path), StreamRole.Listen));
        bridge.AddPort(stream);
        using var first = ConnectUnix(path);
        QueuePort.WaitUntil(() => stream.Connected);
        using var second = ConnectUnix(path);
        Assert.Equal(0, second.Receive(new byte[1])); // closed by the port
        Assert.Equal(1, stream.Refused);
        Assert.Equal(1, stream.Counters.Drops(DropReason.UnknownPeer));
        Assert.True(stream.Connected);
    }

    [Fact]
    public void Of_two_peers_connecting_back_to_back_one_is_served_and_the_other_refused_without_disturbing_it()
    {
        var path = Path.Combine(_dir, "race.sock");
        var bridge = new Bridge("br0");
        var local = new QueuePort("local");
        using var stream = new StreamPort("qemu0", new StreamPortOptions(new UnixDomainSocketEndPoint(path), StreamRole.Listen));
        bridge.AddPort(local);
        bridge.AddPort(stream);
        using var one = ConnectUnix(path);
        using var two = ConnectUnix(path);

        // The refused peer is closed by the port, so it is the one that turns readable (end of stream).
        var ready = new List<Socket> { one, two };
        Socket.Select(ready, null, null, 10_000_000);
        var refused = Assert.Single(ready);
        var served = refused == one ? two : one;
        Assert.Equal(0, refused.Receive(new byte[1]));
        Assert.Equal(1, stream.Refused);
        Assert.Equal(1, stream.Counters.Drops(DropReason.UnknownPeer));
        Assert.Equal(1, stream.Connections);
        refused.Dispose();

        // The served peer still has the port to itself, both ways.
        var fromPeer = Frame.Build(Frame.Broadcast, Frame.Mac(1));
        served.Send(Prefixed(fromPeer));
        Assert.Equal(fromPeer, local.Next());
        var toPeer = Frame.Build(Frame.Mac(1), Frame.Mac(2));
        local.Inject(toPeer);
        Assert.Equal(toPeer, ReadFrame(served));
        Assert.True(stream.Connected);
        Assert.Equal(0, stream.Counters.Drops(DropReason.LinkDown));

        // And a third is refused as the second was.
        using var three = ConnectUnix(path);
        Assert.Equal(0, three.Receive(new byte[1]));
        Assert.Equal(2, stream.Refused);
        Assert.True(stream.Connected);
    }

    [Fact]
    public void Tcp_peers_not_configured_are_refused_and_counted()
    {
        var bridge = new Bridge("br0");
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        var port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        using var stream = new StreamPort("qemu0", new StreamPortOptions(new IPEndPoint(IPAddress.Loopback, port), StreamRole.Listen) { AllowedAddresses = [IPAddress.Parse("198.18.0.9")] });
        bridge.AddPort(stream);
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveTimeout = 10_000 };
        QueuePort.WaitUntil(() => { try { client.Connect(IPAddress.Loopback, port); return true; } catch (SocketException) { return false; } });
        Assert.Equal(0, client.Receive(new byte[1]));
        Assert.Equal(1, stream.Counters.Drops(DropReason.UnknownPeer));
        Assert.False(stream.Connected);
    }

    internal static Socket TakenTcpAddress()
    {
        var taken = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        taken.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        taken.Listen(1);
        return taken;
    }

    [Fact]
    public void A_listen_that_fails_is_retried_with_one_log_line_until_the_address_is_free()
    {
        var taken = TakenTcpAddress();
        var endpoint = (IPEndPoint)taken.LocalEndPoint!;
        var log = new ConcurrentQueue<string>();
        var bridge = new Bridge("br0");
        var local = new QueuePort("local");
        using var stream = new StreamPort("qemu0", new StreamPortOptions(endpoint, StreamRole.Listen) { ReconnectDelay = TimeSpan.FromMilliseconds(20) });
        stream.Log += log.Enqueue;
        bridge.AddPort(local);
        bridge.AddPort(stream);
        QueuePort.WaitUntil(() => !log.IsEmpty);
        Thread.Sleep(300); // several retries' worth
        var failure = Assert.Single(log);
        Assert.Contains("AddressAlreadyInUse", failure);

        taken.Dispose();
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveTimeout = 10_000 };
        QueuePort.WaitUntil(() => { try { client.Connect(endpoint); return true; } catch (SocketException) { return false; } });
        QueuePort.WaitUntil(() => stream.Connected);
        var fromPeer = Frame.Build(Frame.Broadcast, Frame.Mac(1));
        client.Send(Prefixed(fromPeer));
        Assert.Equal(fromPeer, local.Next());
        var toPeer = Frame.Build(Frame.Mac(1), Frame.Mac(2));
        local.Inject(toPeer);
        Assert.Equal(toPeer, ReadFrame(client));
        Assert.Equal(2, log.Count); // the failure, then that it listens
    }

    [Fact]
    public void A_connecting_port_reconnects_after_its_peer_goes_away()
    {
        var path = Path.Combine(_dir, "peer.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        var bridge = new Bridge("br0");
        var local = new QueuePort("local");
        using var stream = new StreamPort("qemu0", new StreamPortOptions(new UnixDomainSocketEndPoint(path), StreamRole.Connect) { ReconnectDelay = TimeSpan.FromMilliseconds(100) });
        bridge.AddPort(local);
        bridge.AddPort(stream);
        using (var first = listener.Accept())
        {
            QueuePort.WaitUntil(() => stream.Connected);
        }
        using var second = listener.Accept();
        second.ReceiveTimeout = 10_000;
        QueuePort.WaitUntil(() => stream.Connected && stream.Connections == 2);
        var f = Frame.Build(Frame.Broadcast, Frame.Mac(5));
        local.Inject(f);
        Assert.Equal(f, ReadFrame(second));
    }

    [Fact]
    public void Frames_are_dropped_as_link_down_without_a_peer()
    {
        var bridge = new Bridge("br0");
        var local = new QueuePort("local");
        using var stream = new StreamPort("qemu0", new StreamPortOptions(new UnixDomainSocketEndPoint(Path.Combine(_dir, "none.sock")), StreamRole.Connect));
        bridge.AddPort(local);
        bridge.AddPort(stream);
        local.Inject(Frame.Build(Frame.Broadcast, Frame.Mac(1)));
        Assert.Equal(1, stream.Counters.Drops(DropReason.LinkDown));
    }
}

[Collection(ProcessWide.Name)]
public class StreamPortDescriptorTests
{
    [Fact]
    public void A_listen_that_fails_leaks_no_descriptor()
    {
        using var taken = StreamPortTests.TakenTcpAddress();
        var endpoint = (IPEndPoint)taken.LocalEndPoint!;
        var left = ProcessWide.DescriptorsLeftBy(20, () =>
        {
            using var failed = new ManualResetEventSlim();
            var bridge = new Bridge("br0");
            using var stream = new StreamPort("qemu0", new StreamPortOptions(endpoint, StreamRole.Listen) { ReconnectDelay = TimeSpan.FromMilliseconds(10) });
            stream.Log += _ => failed.Set();
            bridge.AddPort(stream);
            Assert.True(failed.Wait(TimeSpan.FromSeconds(10)), "the listen did not fail");
        });
        Assert.Equal(0, left);
    }
}
