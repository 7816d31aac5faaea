using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Pipelines.Sockets.Unofficial;

namespace XenIo.Consoled.External;

/// <summary>
/// An external VM's serial console served by the VM itself, e.g. QEMU
/// <c>-chardev socket,id=c,host=127.0.0.1,port=N,server=on,wait=off -serial chardev:c</c> (or
/// <c>path=…</c> for a Unix socket). consoled is the client: it connects, pumps the serial output into
/// the console like a ring's, writes the writer's input back, and reconnects (with backoff) whenever
/// the VM restarts or drops us, since QEMU 7.2 has no reconnecting server side.
/// </summary>
public sealed class SocketConsoleSource : IConsoleSource
{
    private static readonly TimeSpan FirstRetry = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan LastRetry = TimeSpan.FromSeconds(2);
    private readonly string _name;
    private readonly EndPoint _endPoint;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _writeGate = new(1, 1);
    private volatile SocketConnection? _current;

    public SocketConsoleSource(string name, EndPoint endPoint, ILogger logger)
    {
        _name = name;
        _endPoint = endPoint;
        _logger = logger;
    }

    public EndPoint EndPoint => _endPoint;

    public bool IsConnected => _current is not null;

    /// <summary>How many times a connection was made.</summary>
    public int Connections { get; private set; }

    public async Task RunAsync(IConsoleOutput output, CancellationToken cancellationToken)
    {
        var retry = FirstRetry;
        bool failureLogged = false;
        while (!cancellationToken.IsCancellationRequested)
        {
            var socket = new Socket(_endPoint.AddressFamily, SocketType.Stream,
                _endPoint is UnixDomainSocketEndPoint ? ProtocolType.Unspecified : ProtocolType.Tcp);
            SocketConnection? connection = null;
            try
            {
                await socket.ConnectAsync(_endPoint, cancellationToken).ConfigureAwait(false);
                connection = SocketConnection.Create(socket);
                _current = connection;
                Connections++;
                retry = FirstRetry;
                failureLogged = false;
                _logger.LogInformation("console {Name}: connected to {EndPoint}", _name, _endPoint);
                output.Notice($"connected to {_endPoint}");
                while (true)
                {
                    var result = await connection.Input.ReadAsync(cancellationToken).ConfigureAwait(false);
                    foreach (var segment in result.Buffer) output.Write(segment.Span);
                    connection.Input.AdvanceTo(result.Buffer.End);
                    if (result.IsCompleted || result.IsCanceled) break;
                }
                output.Notice($"{_endPoint} closed the console; reconnecting");
                _logger.LogInformation("console {Name}: {EndPoint} closed the connection", _name, _endPoint);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e) when (e is SocketException or IOException or ConnectionResetException or ConnectionAbortedException or InvalidOperationException)
            {
                if (!failureLogged)
                {
                    _logger.LogInformation("console {Name}: {EndPoint}: {Error}; retrying", _name, _endPoint, e.Message);
                    failureLogged = true;
                }
            }
            finally
            {
                _current = null;
                if (connection is not null) connection.Dispose();
                else socket.Dispose();
            }
            try
            {
                await Task.Delay(retry, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }
            retry = TimeSpan.FromTicks(Math.Min(retry.Ticks * 2, LastRetry.Ticks));
        }
    }

    public async ValueTask<bool> WriteInputAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        var connection = _current;
        if (connection is null) return false;
        await _writeGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var flush = await connection.Output.WriteAsync(data, cancellationToken).ConfigureAwait(false);
            return !flush.IsCompleted;
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or ConnectionResetException or ConnectionAbortedException)
        {
            return false;
        }
        finally
        {
            _writeGate.Release();
        }
    }
}
