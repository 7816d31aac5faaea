using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using XenIo.Hypervisor.Daemons;

namespace XenIo.Consoled.Viewers;

/// <summary>
/// A listening TCP port whose accepted sockets go to a handler. Ports are taken from a base upwards
/// (the first free one), or any free port for base 0; the port actually bound is what gets published.
/// We hold the listening socket ourselves rather than go through <c>SocketServer.Listen</c>, which
/// reports the endpoint it was asked for, not the port the kernel picked.
/// </summary>
public sealed class TcpListenerPort : IAsyncDisposable
{
    /// <summary>How far above the base we look for a free port.</summary>
    public const int SearchRange = 1000;
    private readonly Socket _socket;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;

    private TcpListenerPort(Socket socket, Func<Socket, CancellationToken, Task> onAccepted, ILogger logger)
    {
        _socket = socket;
        EndPoint = (IPEndPoint)socket.LocalEndPoint!;
        _accepting = Task.Run(() => AcceptLoopAsync(onAccepted, logger));
    }

    public IPEndPoint EndPoint { get; }

    public int Port => EndPoint.Port;

    public static TcpListenerPort Bind(IPAddress address, int portBase, ISet<int> avoid, Func<Socket, CancellationToken, Task> onAccepted, ILogger logger)
    {
        if (portBase == 0) return new TcpListenerPort(Open(address, 0), onAccepted, logger);
        SocketException? last = null;
        for (int port = portBase; port < portBase + SearchRange && port <= IPEndPoint.MaxPort; port++)
        {
            if (avoid.Contains(port)) continue;
            try
            {
                return new TcpListenerPort(Open(address, port), onAccepted, logger);
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressAlreadyInUse)
            {
                last = e;
            }
        }
        throw new InvalidOperationException($"no free TCP port on {address} from {portBase}", last);
    }

    private static Socket Open(IPAddress address, int port)
    {
        var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            socket.Bind(new IPEndPoint(address, port));
            socket.Listen(128);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private Task AcceptLoopAsync(Func<Socket, CancellationToken, Task> onAccepted, ILogger logger) =>
        ListeningSocket.AcceptAsync(_socket, client => _ = Task.Run(async () =>
        {
            try
            {
                await onAccepted(client, _stop.Token).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                logger.LogError(e, "connection on port {Port} failed", Port);
                client.Dispose();
            }
        }), message => logger.LogWarning("port {Port}: {Message}", Port, message), _stop.Token);

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _socket.Dispose();
        try
        {
            await _accepting.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
    }
}
