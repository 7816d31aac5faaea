using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using XenIo.Hypervisor.Daemons;

namespace XenIo.Hypervisor.Store.Transports;

/// <summary>
/// The dom0 Unix socket <c>&lt;run&gt;/xenstored/socket</c> (mode 0600, in a 0700 directory): every client
/// is dom0, as with Xen's xenstored socket, which is why only root may reach it.
/// </summary>
public sealed class XenstoreSocketListener : IAsyncDisposable
{
    private readonly Xenstored _daemon;
    private readonly ILogger _logger;
    private readonly Socket _listen;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _acceptLoop;
    private readonly List<(SocketXenstoreStream Stream, Task Task)> _clients = [];

    public XenstoreSocketListener(Xenstored daemon, string socketPath, ILogger? logger = null)
    {
        _daemon = daemon;
        _logger = logger ?? NullLogger.Instance;
        SocketPath = socketPath;
        var dir = Path.GetDirectoryName(socketPath)!;
        Directory.CreateDirectory(dir);
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        _listen = ListeningSocket.Unix(socketPath, UnixFileMode.UserRead | UnixFileMode.UserWrite, backlog: 128);
        _acceptLoop = ListeningSocket.AcceptAsync(_listen, Serve, message => _logger.LogWarning("xenstored: {Message}", message), _stop.Token);
    }

    public static string PathUnder(string runDirectory) => Path.Combine(runDirectory, "xenstored", "socket");

    public string SocketPath { get; }

    private void Serve(Socket client)
    {
        if (!PeerAllowed(client, out var uid))
        {
            // The socket is 0600 in a 0700 directory; a stranger here means modes were changed under us.
            _logger.LogWarning("xenstored: refusing a socket client running as uid {Uid}", uid);
            client.Dispose();
            return;
        }
        var stream = new SocketXenstoreStream(client);
        var task = Task.Run(() => _daemon.ServeAsync(stream, _stop.Token));
        lock (_clients)
        {
            _clients.RemoveAll(c => c.Task.IsCompleted);
            _clients.Add((stream, task));
        }
    }

    /// <summary>SO_PEERCRED: only root and the daemon's own user are dom0.</summary>
    private static bool PeerAllowed(Socket client, out uint uid)
    {
        uid = uint.MaxValue;
        if (!OperatingSystem.IsLinux()) return true;
        if (ListeningSocket.PeerUid(client) is not { } peer) return false;
        uid = peer;
        return uid == 0 || uid == Interop.Libc.GetEffectiveUserId();
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listen.Dispose();
        try { await _acceptLoop.ConfigureAwait(false); } catch (OperationCanceledException) { }
        (SocketXenstoreStream Stream, Task Task)[] clients;
        lock (_clients) clients = [.. _clients];
        foreach (var c in clients) c.Stream.Abort();
        try { await Task.WhenAll(clients.Select(c => c.Task)).ConfigureAwait(false); } catch (Exception) { }
        try { File.Delete(SocketPath); } catch (IOException) { }
        _stop.Dispose();
    }
}
