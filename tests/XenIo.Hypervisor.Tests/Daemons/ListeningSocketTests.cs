using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using XenIo.Hypervisor.Daemons;
using Xunit;

namespace XenIo.Hypervisor.Tests.Daemons;

/// <summary>
/// The daemons' listening sockets: a Unix socket appears at its path with its mode already set and
/// replaces a stale one; the accept loop hands connections over, ends when its listener closes or it is
/// stopped, and outlives failing accepts with one log line per run of failures instead of spinning.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class ListeningSocketTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "xenio-listen-" + Guid.NewGuid().ToString("N")[..10]);

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public void Unix_socket_is_published_with_its_mode_over_a_stale_one()
    {
        var path = Path.Combine(_dir, "run", "api.sock");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        const string Stale = "left by a daemon that died";
        File.WriteAllText(path, Stale);
        var seen = new List<(string Path, UnixFileMode Mode, bool StaleStillThere)>();
        using var listener = ListeningSocket.Unix(path, UnixFileMode.UserRead | UnixFileMode.UserWrite, backlog: 4,
            prepare: temporary => seen.Add((temporary, File.GetUnixFileMode(temporary), File.ReadAllText(path) == Stale)));

        // prepare ran on another name, with the mode already set, while the path still held the stale file.
        var (preparedPath, preparedMode, staleStillThere) = Assert.Single(seen);
        Assert.NotEqual(path, preparedPath);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, preparedMode);
        Assert.True(staleStillThere);
        Assert.False(File.Exists(preparedPath));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));

        // The path now is the listening socket; both ends of a connection name this process's user.
        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        client.Connect(new UnixDomainSocketEndPoint(path));
        using var accepted = listener.Accept();
        Assert.NotNull(ListeningSocket.PeerUid(accepted));
        Assert.Equal(ListeningSocket.PeerUid(client), ListeningSocket.PeerUid(accepted));
    }

    [Fact]
    public void A_failed_bind_leaves_nothing_behind()
    {
        var path = Path.Combine(_dir, "api.sock");
        Assert.Throws<IOException>(() => ListeningSocket.Unix(path, UnixFileMode.UserRead | UnixFileMode.UserWrite, backlog: 4,
            prepare: _ => throw new IOException("no such group")));
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
    }

    [Fact]
    public async Task Accept_loop_hands_over_connections_and_ends_when_the_listener_closes()
    {
        var path = Path.Combine(_dir, "api.sock");
        var listener = ListeningSocket.Unix(path, UnixFileMode.UserRead | UnixFileMode.UserWrite, backlog: 4);
        var clients = new BlockingCollection<Socket>();
        var loop = ListeningSocket.AcceptAsync(listener, clients.Add, _ => { }, CancellationToken.None);
        for (var i = 0; i < 3; i++)
        {
            using var client = await ConnectAsync(path);
            AssertHandedOver(clients);
        }
        listener.Dispose();
        await loop.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task A_connection_whose_handler_throws_is_closed_and_the_loop_goes_on()
    {
        var path = Path.Combine(_dir, "api.sock");
        using var listener = ListeningSocket.Unix(path, UnixFileMode.UserRead | UnixFileMode.UserWrite, backlog: 4);
        var clients = new BlockingCollection<Socket>();
        var log = new ConcurrentQueue<string>();
        var first = true;
        using var stop = new CancellationTokenSource();
        var loop = ListeningSocket.AcceptAsync(listener, c =>
        {
            if (!first) { clients.Add(c); return; }
            first = false;
            throw new InvalidOperationException("handler bug");
        }, log.Enqueue, stop.Token);

        using var doomed = await ConnectAsync(path);
        using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        Assert.Equal(0, await doomed.ReceiveAsync(new byte[1], SocketFlags.None, wait.Token)); // closed by the loop
        Assert.Contains(log, l => l.Contains("handler bug"));

        using var next = await ConnectAsync(path);
        AssertHandedOver(clients);
        stop.Cancel();
        await loop.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task Accept_loop_ends_when_stopped()
    {
        using var listener = ListeningSocket.Unix(Path.Combine(_dir, "api.sock"), UnixFileMode.UserRead | UnixFileMode.UserWrite, backlog: 4);
        using var stop = new CancellationTokenSource();
        var loop = ListeningSocket.AcceptAsync(listener, c => c.Dispose(), _ => { }, stop.Token);
        stop.Cancel();
        await loop.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task Failing_accepts_are_retried_with_one_log_line_until_accepting_works_again()
    {
        // A TCP listener shut down for reading fails every accept with EINVAL (as EMFILE would, for
        // longer): the loop must neither spin nor give up, and must take connections once it listens again.
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(4);
        var log = new ConcurrentQueue<string>();
        var clients = new BlockingCollection<Socket>();
        using var stop = new CancellationTokenSource();
        var loop = ListeningSocket.AcceptAsync(listener, clients.Add, log.Enqueue, stop.Token);

        listener.Shutdown(SocketShutdown.Receive);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (log.IsEmpty && DateTime.UtcNow < deadline) await Task.Delay(20);
        await Task.Delay(500); // several retries' worth
        Assert.False(loop.IsCompleted);
        var failure = Assert.Single(log);
        Assert.Contains("accept failed", failure);

        listener.Listen(4);
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(listener.LocalEndPoint!);
        AssertHandedOver(clients);
        Assert.Equal(["accepting again"], log.Skip(1));

        stop.Cancel();
        await loop.WaitAsync(TimeSpan.FromSeconds(10));
    }

    private static async Task<Socket> ConnectAsync(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(path));
        return socket;
    }

    private static void AssertHandedOver(BlockingCollection<Socket> clients)
    {
        Assert.True(clients.TryTake(out var accepted, TimeSpan.FromSeconds(10)), "the accept loop did not hand the connection over");
        accepted!.Dispose();
    }
}
