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
    private static readonly TimeSpan FirstRetry = TimeSpan.FromMilliseconds(50);
    private static readonly TimeSpan LongestRetry = TimeSpan.FromSeconds(1);

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
    /// block: start the conversation on a task of its own). A failed accept is reported to
    /// <paramref name="log"/> once per run of failures, with the wait before the next try, which
    /// doubles up to a second while accepts keep failing.
    /// </summary>
    public static async Task AcceptAsync(Socket listener, Action<Socket> onClient, Action<string> log, CancellationToken stop)
    {
        var retry = TimeSpan.Zero;
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
            catch (SocketException e)
            {
                var first = retry == TimeSpan.Zero;
                retry = first ? FirstRetry : TimeSpan.FromTicks(Math.Min(retry.Ticks * 2, LongestRetry.Ticks));
                if (first) log($"accept failed: {e.Message}; retrying every {retry.TotalMilliseconds:0} ms to {LongestRetry.TotalMilliseconds:0} ms until it succeeds");
                try
                {
                    await Task.Delay(retry, stop).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                continue;
            }
            if (retry != TimeSpan.Zero) log("accepting again");
            retry = TimeSpan.Zero;
            onClient(client);
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
