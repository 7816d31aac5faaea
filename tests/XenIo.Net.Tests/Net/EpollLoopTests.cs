using System.Net;
using System.Net.Sockets;
using XenIo.Net.Tap;
using Xunit;

namespace XenIo.Net.Tests.Net;

public sealed class EpollLoopTests
{
    /// <summary>Blocks in its first wake-up until released, then drains the socket.</summary>
    private sealed class BlockingHandler(Socket socket) : IReadinessHandler
    {
        public readonly ManualResetEventSlim Entered = new();
        public readonly ManualResetEventSlim Release = new();
        public volatile bool Left;

        public void OnReadable()
        {
            Entered.Set();
            Release.Wait();
            var buffer = new byte[64];
            while (socket.Available > 0) socket.Receive(buffer);
            Left = true;
        }
    }

    [Fact]
    public void Remove_returns_only_once_the_descriptors_handler_has_returned()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        using var sender = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        using var loop = new EpollLoop("remove-test");
        var handler = new BlockingHandler(socket);
        var fd = (int)socket.Handle;
        loop.Add(fd, handler);
        sender.SendTo(new byte[1], socket.LocalEndPoint!);
        Assert.True(handler.Entered.Wait(TimeSpan.FromSeconds(10)));

        // The owner removes the descriptor to close it: it must not get it back while the handler still reads it.
        var remover = new Thread(() => loop.Remove(fd));
        remover.Start();
        try
        {
            Assert.False(remover.Join(TimeSpan.FromMilliseconds(300)), "Remove returned while the handler was still running");
        }
        finally
        {
            handler.Release.Set();
        }
        Assert.True(remover.Join(TimeSpan.FromSeconds(10)));
        Assert.True(handler.Left);
    }

    [Fact]
    public void A_handler_may_remove_its_own_descriptor()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        using var sender = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        using var loop = new EpollLoop("self-remove-test");
        var done = new ManualResetEventSlim();
        var fd = (int)socket.Handle;
        loop.Add(fd, new SelfRemoving(loop, fd, done));
        sender.SendTo(new byte[1], socket.LocalEndPoint!);
        Assert.True(done.Wait(TimeSpan.FromSeconds(10)));
    }

    private sealed class SelfRemoving(EpollLoop loop, int fd, ManualResetEventSlim done) : IReadinessHandler
    {
        public void OnReadable()
        {
            loop.Remove(fd);
            done.Set();
        }
    }
}
