using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

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
        if (File.Exists(socketPath)) File.Delete(socketPath);
        _listen = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listen.Bind(new UnixDomainSocketEndPoint(socketPath));
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(socketPath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        _listen.Listen(128);
        _acceptLoop = AcceptLoopAsync();
    }

    public static string PathUnder(string runDirectory) => Path.Combine(runDirectory, "xenstored", "socket");

    public string SocketPath { get; }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listen.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) { break; }
            catch (ObjectDisposedException) { break; }
            catch (SocketException e)
            {
                _logger.LogWarning("xenstored: accept failed: {Reason}", e.Message);
                continue;
            }
            if (!PeerAllowed(client, out var uid))
            {
                // The socket is 0600 in a 0700 directory; a stranger here means modes were changed under us.
                _logger.LogWarning("xenstored: refusing a socket client running as uid {Uid}", uid);
                client.Dispose();
                continue;
            }
            var stream = new SocketXenstoreStream(client);
            var task = Task.Run(() => _daemon.ServeAsync(stream, _stop.Token));
            lock (_clients)
            {
                _clients.RemoveAll(c => c.Task.IsCompleted);
                _clients.Add((stream, task));
            }
        }
    }

    private const int SolSocket = 1;
    private const int SoPeerCred = 17;

    /// <summary>SO_PEERCRED: only root and the daemon's own user are dom0.</summary>
    private static bool PeerAllowed(Socket client, out uint uid)
    {
        uid = uint.MaxValue;
        if (!OperatingSystem.IsLinux()) return true;
        Span<byte> cred = stackalloc byte[12]; // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
        try
        {
            if (client.GetRawSocketOption(SolSocket, SoPeerCred, cred) < 12) return false;
        }
        catch (SocketException)
        {
            return false;
        }
        uid = System.Runtime.InteropServices.MemoryMarshal.Read<uint>(cred[4..]);
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
