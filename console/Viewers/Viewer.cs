using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Net;
using System.Text;
using Microsoft.Extensions.Logging;
using Pipelines.Sockets.Unofficial;
using XenIo.Consoled.Access;
using XenIo.Consoled.Buffers;
using XenIo.Consoled.Telnet;

namespace XenIo.Consoled.Viewers;

/// <summary>A viewer let in by consoled's API socket: who it is, and whether it takes the writer role.</summary>
public sealed record LocalAttach(string Description, bool Force);

/// <summary>How a console port talks: telnet (RFC 854) or raw bytes for <c>socat</c>/<c>nc</c>.</summary>
public enum ViewerMode
{
    Telnet,
    Raw,
}

/// <summary>
/// One client attached to a console. It authenticates (socket owner on loopback, else a token line),
/// then is fed guest output through its own bounded <see cref="ViewerQueue"/> by a send loop of its own,
/// and passes its input to the guest while it is the writer. In-band commands follow conserver's
/// escape, Ctrl-E c then a letter (the telnet client keeps Ctrl-] for itself):
/// <c>f</c> force read-write, <c>a</c> read-write if free, <c>s</c> spectate, <c>b</c> send a break
/// (the next key is a SysRq key), <c>.</c> disconnect, <c>?</c> help.
/// </summary>
public sealed class Viewer : ITelnetEvents
{
    public const byte EscapeKey = 0x05; // Ctrl-E
    private const int PieceSize = 8192;
    private const int EncodeChunk = 16 * 1024;
    private static readonly TimeSpan SysrqWindow = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan SendDrainTimeout = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan InputStallTimeout = TimeSpan.FromSeconds(2);

    private const string Help =
        "Ctrl-E c then: f force read-write, a read-write if free, s spectate, b break (next key is SysRq), . disconnect, ? help";

    private enum Escape : byte
    {
        Normal,
        SawCtrlE,
        Command,
    }

    private readonly ConsoleHub _hub;
    private readonly SocketConnection _connection;
    private readonly ConsoleAccess _access;
    private readonly ILogger _logger;
    private readonly TelnetProtocol? _telnet;
    private readonly ViewerQueue _queue;
    private readonly ArrayBufferWriter<byte> _replies = new(256);
    private readonly byte[] _encoded = new byte[TelnetProtocol.MaxEncodedLength(EncodeChunk)];
    private readonly byte[] _decoded = new byte[PieceSize];
    private readonly byte[] _forward = new byte[PieceSize + 1];
    private readonly byte[] _line = new byte[128];
    private readonly IPEndPoint? _remote;
    private readonly IPEndPoint? _local;
    private readonly LocalAttach? _localAttach;
    private int _lineLength;
    private bool _authenticated;
    private bool _attached;
    private bool _skipLineFeed;
    private Escape _escape;
    private bool _breakPending;
    private int _breakFrom;
    private long _breakTimestamp;

    /// <param name="localAttach">
    /// A client consoled's API socket has already let in (<c>xenio console</c>): no token prompt, and
    /// optionally the writer role at once.
    /// </param>
    public Viewer(ConsoleHub hub, SocketConnection connection, ViewerMode mode, ConsoleAccess access, int queueBytes, ILogger logger,
        LocalAttach? localAttach = null)
    {
        _hub = hub;
        _connection = connection;
        _access = access;
        _logger = logger;
        Mode = mode;
        _telnet = mode == ViewerMode.Telnet ? new TelnetProtocol() : null;
        _queue = new ViewerQueue(queueBytes);
        _localAttach = localAttach;
        _remote = connection.Socket.RemoteEndPoint as IPEndPoint;
        _local = connection.Socket.LocalEndPoint as IPEndPoint;
        Description = localAttach?.Description ?? _remote?.ToString() ?? "local client";
    }

    public ViewerMode Mode { get; }

    /// <summary>Who this is, for notices and logs: the client's address and, when known, its uid.</summary>
    public string Description { get; private set; }

    public long DroppedBytes => _queue.Dropped;

    public int WindowWidth => _telnet?.WindowWidth ?? 0;

    public int WindowHeight => _telnet?.WindowHeight ?? 0;

    /// <summary>Serves the connection until the client leaves, is refused, or <paramref name="cancellationToken"/> fires.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        using var sendCancel = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var send = Task.Run(() => SendLoopAsync(sendCancel.Token), CancellationToken.None);
        try
        {
            if (_telnet is not null)
            {
                _telnet.Start(_replies);
                FlushReplies();
            }
            Authenticate();
            await ReceiveLoopAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or System.Net.Sockets.SocketException or ConnectionResetException or ConnectionAbortedException)
        {
        }
        finally
        {
            if (_attached) _hub.Detach(this);
            _queue.Close();
            if (await Task.WhenAny(send, Task.Delay(SendDrainTimeout, CancellationToken.None)).ConfigureAwait(false) != send)
            {
                // A client that stopped reading cannot hold us here.
                await sendCancel.CancelAsync().ConfigureAwait(false);
            }
            try
            {
                await send.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
            // Let the connection hand its last bytes (a refusal, a goodbye) to the kernel before closing.
            for (int i = 0; i < 100 && _connection.GetCounters().BytesWaitingToBeSent > 0 && !sendCancel.IsCancellationRequested; i++)
            {
                await Task.Delay(10, CancellationToken.None).ConfigureAwait(false);
            }
            _connection.Dispose();
        }
    }

    private void Authenticate()
    {
        if (_localAttach is { } local)
        {
            Admit();
            if (local.Force) _hub.ForceWriter(this);
            return;
        }
        if (!_access.RequireTokens && _remote is not null && _local is not null && TcpSocketOwner.Find(_remote, _local) is { } uid)
        {
            Description = $"uid {uid} at {_remote}";
            if (_access.Administrators.IsAdministrator(uid))
            {
                Admit();
                return;
            }
        }
        _queue.TryWriteControl(Encoding.ASCII.GetBytes($"xenio: token for console {_hub.Name}: "));
    }

    private void Admit()
    {
        _authenticated = true;
        _hub.Attach(this);
        _attached = true;
    }

    private async Task ReceiveLoopAsync(CancellationToken cancellationToken)
    {
        var input = _connection.Input;
        using var authDeadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        authDeadline.CancelAfter(_access.AuthTimeout);
        while (true)
        {
            var token = _authenticated ? cancellationToken : authDeadline.Token;
            ReadResult result;
            try
            {
                result = await input.ReadAsync(token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                QueueNotice("no token given in time");
                _logger.LogInformation("console {Name}: {Viewer} gave no token in time", _hub.Name, Description);
                return;
            }
            var buffer = result.Buffer;
            bool keep = true;
            foreach (var segment in buffer)
            {
                for (int at = 0; keep && at < segment.Length; at += PieceSize)
                {
                    keep = await ProcessAsync(segment.Slice(at, Math.Min(PieceSize, segment.Length - at)), cancellationToken).ConfigureAwait(false);
                }
                if (!keep) break;
            }
            input.AdvanceTo(buffer.End);
            if (!keep || result.IsCompleted || result.IsCanceled) return;
        }
    }

    /// <summary>Handles one piece of client input; false closes the connection.</summary>
    private async ValueTask<bool> ProcessAsync(ReadOnlyMemory<byte> piece, CancellationToken cancellationToken)
    {
        int f = Filter(piece.Span, out bool keep);
        if (f > 0) await DeliverInputAsync(_forward.AsMemory(0, f), cancellationToken).ConfigureAwait(false);
        return keep;
    }

    /// <summary>
    /// Waits for the guest to take the input, but not forever: a guest that stops reading its console
    /// must not pin this connection (we would never see the client leave).
    /// </summary>
    private async ValueTask DeliverInputAsync(ReadOnlyMemory<byte> input, CancellationToken cancellationToken)
    {
        using var stall = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        stall.CancelAfter(InputStallTimeout);
        try
        {
            await _hub.WriteInputAsync(this, input, stall.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            QueueNotice("the guest is not reading its console; input dropped");
        }
    }

    /// <summary>
    /// Runs a piece through telnet decoding, the token prompt, the SysRq window and the escape commands;
    /// what is left for the guest lands in <c>_forward</c> (at most the piece plus a held Ctrl-E).
    /// </summary>
    private int Filter(ReadOnlySpan<byte> piece, out bool keep)
    {
        keep = true;
        ReadOnlySpan<byte> data;
        if (_telnet is not null)
        {
            int n = _telnet.Receive(piece, _decoded, _replies, this);
            FlushReplies();
            data = _decoded.AsSpan(0, n);
        }
        else
        {
            data = piece;
        }

        int f = 0;
        for (int i = 0; i < data.Length; i++)
        {
            byte b = data[i];
            if (!_authenticated)
            {
                if (!AuthenticationByte(b))
                {
                    keep = false;
                    break;
                }
                continue;
            }
            if (_skipLineFeed)
            {
                _skipLineFeed = false;
                if (b == (byte)'\n') continue;
            }
            if (_breakPending && i >= _breakFrom)
            {
                _breakPending = false;
                if (Stopwatch.GetElapsedTime(_breakTimestamp) <= SysrqWindow)
                {
                    _hub.RequestSysrq(this, (char)b);
                    continue;
                }
            }
            switch (_escape)
            {
                case Escape.Normal:
                    if (b == EscapeKey) _escape = Escape.SawCtrlE;
                    else _forward[f++] = b;
                    break;
                case Escape.SawCtrlE:
                    if (b == (byte)'c')
                    {
                        _escape = Escape.Command;
                        break;
                    }
                    _forward[f++] = EscapeKey;
                    if (b != EscapeKey)
                    {
                        _forward[f++] = b;
                        _escape = Escape.Normal;
                    }
                    break;
                case Escape.Command:
                    _escape = Escape.Normal;
                    if (!RunCommand(b, i)) keep = false;
                    break;
            }
            if (!keep) break;
        }
        _breakFrom = 0;
        return f;
    }

    private bool RunCommand(byte command, int index)
    {
        switch ((char)command)
        {
            case 'f':
                _hub.ForceWriter(this);
                break;
            case 'a':
                _hub.ClaimWriter(this);
                break;
            case 's':
                _hub.Spectate(this);
                break;
            case 'b':
                ArmBreak(index + 1);
                QueueNotice("break: next key is a SysRq key");
                break;
            case '.':
                QueueNotice("disconnected");
                return false;
            case '?':
                QueueNotice(Help);
                break;
            default:
                QueueNotice($"unknown command; {Help}");
                break;
        }
        return true;
    }

    private bool AuthenticationByte(byte b)
    {
        if (b is (byte)'\r' or (byte)'\n')
        {
            if (_lineLength == 0) return true;
            var line = _line.AsSpan(0, _lineLength).Trim((byte)' ');
            _lineLength = 0;
            if (line.StartsWith("token "u8)) line = line[6..].Trim((byte)' ');
            if (!_access.Tokens.Verify(_hub.Name, line))
            {
                QueueNotice("access denied");
                _logger.LogWarning("console {Name}: {Viewer} refused: wrong token", _hub.Name, Description);
                return false;
            }
            _skipLineFeed = b == (byte)'\r';
            _queue.TryWriteControl("\r\n"u8);
            Admit();
            return true;
        }
        if (b is 0x7f or 0x08)
        {
            if (_lineLength > 0) _lineLength--;
            return true;
        }
        if (_lineLength == _line.Length)
        {
            QueueNotice("access denied");
            _logger.LogWarning("console {Name}: {Viewer} refused: token line too long", _hub.Name, Description);
            return false;
        }
        _line[_lineLength++] = b;
        return true;
    }

    private void ArmBreak(int from)
    {
        _breakPending = true;
        _breakFrom = from;
        _breakTimestamp = Stopwatch.GetTimestamp();
    }

    void ITelnetEvents.OnBreak(int dataIndex)
    {
        if (_authenticated) ArmBreak(dataIndex);
    }

    void ITelnetEvents.OnWindowSize(int width, int height)
    {
    }

    private void FlushReplies()
    {
        if (_replies.WrittenCount == 0) return;
        _queue.TryWriteControl(_replies.WrittenSpan);
        _replies.ResetWrittenCount();
    }

    /// <summary>Queues a status line for this viewer, outside the guest's byte stream.</summary>
    internal void QueueNotice(string message)
    {
        Span<byte> line = stackalloc byte[1800];
        int n = Encoding.UTF8.GetBytes($"\r\n[xenio: {(message.Length > 400 ? message[..400] : message)}]\r\n", line);
        _queue.TryWriteControl(line[..n]);
    }

    /// <summary>Queues guest output for this viewer, encoded for its protocol; never blocks. Called under the hub's lock.</summary>
    internal void DeliverGuestOutput(ReadOnlySpan<byte> data)
    {
        if (_telnet is null)
        {
            _queue.TryWriteData(data);
            return;
        }
        while (!data.IsEmpty)
        {
            var piece = data[..Math.Min(EncodeChunk, data.Length)];
            int n = _telnet.Encode(piece, _encoded);
            _queue.TryWriteData(_encoded.AsSpan(0, n));
            data = data[piece.Length..];
        }
    }

    private async Task SendLoopAsync(CancellationToken cancellationToken)
    {
        var output = _connection.Output;
        try
        {
            bool open = true;
            while (open)
            {
                if (_queue.Count == 0) open = await _queue.WaitAsync(cancellationToken).ConfigureAwait(false);
                // Bounded per flush: the flush is where a slow client pushes back, on this viewer alone.
                int total = 0;
                while (total < 64 * 1024)
                {
                    var span = output.GetSpan(16 * 1024);
                    int n = _queue.Take(span);
                    output.Advance(n);
                    if (n == 0) break;
                    total += n;
                }
                if (total == 0 && open) continue;
                var flush = await output.FlushAsync(cancellationToken).ConfigureAwait(false);
                if (flush.IsCompleted || flush.IsCanceled) break;
                if (!open && _queue.Count > 0) open = true;
            }
        }
        // A viewer that went away (broken pipe, reset) ends its own send loop; it is no error of consoled's.
        catch (Exception e) when (e is OperationCanceledException or IOException or System.Net.Sockets.SocketException
                                  or InvalidOperationException or ConnectionResetException or ConnectionAbortedException)
        {
        }
        finally
        {
            await output.CompleteAsync().ConfigureAwait(false);
        }
    }
}
