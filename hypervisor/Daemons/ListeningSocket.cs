using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace XenIo.Hypervisor.Daemons;

/// <summary>
/// The listening sockets of the daemons (xenstored, hyperd, netback, blkback, consoled, a stream port),
/// made and served one way. A Unix socket is bound under a temporary name, given its mode (and group)
/// there and only then renamed into place, so its path is never reachable with looser permissions,
/// whatever the process umask; the rename also replaces the socket of a daemon that died. The accept
/// loop outlives a failing accept (EMFILE when the process is out of descriptors, ENOBUFS): it says so
/// once and waits before trying again instead of spinning on the error or giving up.
/// </summary>
public static class ListeningSocket
{
    /// <summary>
    /// A socket listening on <paramref name="path"/> with <paramref name="mode"/>. <paramref name="prepare"/>
    /// runs on the temporary path before it is published (to give it a group, say). The parent
    /// directory is created when missing.
    /// </summary>
    public static Socket Unix(string path, UnixFileMode mode, int backlog, SocketType type = SocketType.Stream, Action<string>? prepare = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var temporary = path + ".new";
        File.Delete(temporary);
        var socket = new Socket(AddressFamily.Unix, type, ProtocolType.Unspecified);
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(temporary));
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(temporary, mode);
            prepare?.Invoke(temporary);
            // Listening before the rename: a client that sees the path can connect at once.
            socket.Listen(backlog);
            File.Move(temporary, path, overwrite: true);
            return socket;
        }
        catch
        {
            socket.Dispose();
            File.Delete(temporary);
            throw;
        }
    }

    /// <summary>
    /// Accepts connections on <paramref name="listener"/> until <paramref name="stop"/> is cancelled or
    /// the listener is closed, handing each to <paramref name="onClient"/> (which owns it and must not
    /// block: start the conversation on a task of its own; if it throws, that connection is closed and
    /// the loop goes on). Failed accepts are waited out and reported as <see cref="AcceptRetry"/> says.
    /// </summary>
    public static async Task AcceptAsync(Socket listener, Action<Socket> onClient, Action<string> log, CancellationToken stop)
    {
        var retry = new AcceptRetry();
        while (!stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(stop).ConfigureAwait(false);
            }
            catch (Exception) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionAborted or SocketError.Interrupted)
            {
                // A client that gave up before it was accepted, or a signal: nothing is wrong with the listener.
                continue;
            }
            catch (SocketException e)
            {
                var wait = retry.Failed(e.Message, log);
                try
                {
                    await Task.Delay(wait, stop).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                continue;
            }
            retry.Succeeded(log);
            try
            {
                onClient(client);
            }
            catch (Exception e)
            {
                // One connection's failure stays that connection's: the loop goes on accepting.
                client.Dispose();
                log($"dropped a connection: {e.GetType().Name}: {e.Message}");
            }
        }
    }

    /// <summary>The uid of the process at the other end of a Unix socket (SO_PEERCRED), or null when the kernel does not say.</summary>
    public static uint? PeerUid(Socket socket)
    {
        if (!OperatingSystem.IsLinux() || socket.AddressFamily != AddressFamily.Unix) return null;
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; } (SOL_SOCKET 1, SO_PEERCRED 17).
        Span<byte> cred = stackalloc byte[12];
        try
        {
            return socket.GetRawSocketOption(1, 17, cred) == cred.Length ? MemoryMarshal.Read<uint>(cred[4..]) : null;
        }
        catch (SocketException)
        {
            return null;
        }
    }
}

/// <summary>
/// The wait between accepts after one failed (EMFILE when the process is out of descriptors, ENOBUFS):
/// 50 ms, doubling up to a second while they keep failing, said once when a run of failures starts and
/// once when accepting works again. Shared by <see cref="ListeningSocket.AcceptAsync"/> and the hypercall
/// server's epoll loop.
/// </summary>
public struct AcceptRetry
{
    private static readonly TimeSpan First = TimeSpan.FromMilliseconds(50);
    private static readonly TimeSpan Longest = TimeSpan.FromSeconds(1);
    private TimeSpan _wait;

    /// <summary>An accept failed with <paramref name="error"/>: the wait before the next try.</summary>
    public TimeSpan Failed(string error, Action<string> log)
    {
        var first = _wait == TimeSpan.Zero;
        _wait = first ? First : TimeSpan.FromTicks(Math.Min(_wait.Ticks * 2, Longest.Ticks));
        if (first) log($"accept failed: {error}; retrying every {_wait.TotalMilliseconds:0} ms to {Longest.TotalMilliseconds:0} ms until it succeeds");
        return _wait;
    }

    /// <summary>An accept worked.</summary>
    public void Succeeded(Action<string> log)
    {
        if (_wait != TimeSpan.Zero) log("accepting again");
        _wait = TimeSpan.Zero;
    }
}
