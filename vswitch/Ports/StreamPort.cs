using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using XenIo.Hypervisor.Daemons;
using XenIo.Net.Frames;
using XenIo.VSwitch.Core;

namespace XenIo.VSwitch.Ports;

/// <summary>Whether a stream port waits for its peer or dials it.</summary>
public enum StreamRole
{
    /// <summary>Listen and serve one peer at a time (as QEMU's server mode does); others are refused.</summary>
    Listen,
    /// <summary>Connect, and reconnect whenever the connection drops (QEMU 7.2 has no reconnect of its own).</summary>
    Connect,
}

/// <summary>Configuration of a stream port.</summary>
public sealed record StreamPortOptions(EndPoint Endpoint, StreamRole Role)
{
    /// <summary>TCP listen: remote addresses allowed to connect (empty: loopback only).</summary>
    public IReadOnlyCollection<IPAddress> AllowedAddresses { get; init; } = [];

    /// <summary>Unix listen: peer uids allowed to connect (empty: root and our own uid). The socket file is also 0600.</summary>
    public IReadOnlyCollection<uint> AllowedUids { get; init; } = [];

    public TimeSpan ReconnectDelay { get; init; } = TimeSpan.FromSeconds(1);
    public int QueueLength { get; init; } = 1024;
}

/// <summary>
/// A QEMU <c>-netdev stream</c> (or <c>socket</c>) peer as a switch port, over a Unix or TCP stream
/// socket, listening or connecting with reconnect. Frames from the peer are parsed in place from the
/// receive buffer (the 4-byte length prefix is the headroom the bridge needs); frames to the peer are
/// copied once into a pooled buffer and queued for a writer task, so the bridge never waits on a slow
/// peer: a full queue drops and counts. A bad length prefix closes that connection only.
/// </summary>
public sealed class StreamPort : SwitchPort
{
    private readonly StreamPortOptions _options;
    private readonly PacketBufferPool _small = new(2048, 1024);
    private readonly PacketBufferPool _large = new(StreamFraming.MaxFrameLength, 32);
    private readonly Channel<PacketBuffer> _queue;
    private readonly CancellationTokenSource _stop = new();
    private Socket? _connection;
    private Task? _run;
    private Task? _write;
    private long _connections;
    private long _refused;
    private long _malformedClosures;

    public StreamPort(string name, StreamPortOptions options) : base(name)
    {
        _options = options;
        _queue = Channel.CreateBounded<PacketBuffer>(new BoundedChannelOptions(options.QueueLength) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
    }

    public override string Kind => "stream";
    public StreamPortOptions Options => _options;
    public bool Connected => Volatile.Read(ref _connection) is not null;
    public long Connections => Interlocked.Read(ref _connections);
    public long Refused => Interlocked.Read(ref _refused);
    public long MalformedClosures => Interlocked.Read(ref _malformedClosures);

    /// <summary>Raised (on a pool thread) with one line about connections and refusals, for the daemon's log.</summary>
    public event Action<string>? Log;

    protected internal override void OnAttached()
    {
        _write = Task.Run(WriteLoop);
        _run = _options.Role == StreamRole.Listen ? Task.Run(ListenLoop) : Task.Run(ConnectLoop);
    }

    protected internal override void OnDetached() => Stop();

    protected internal override DropReason Transmit(ReadOnlySpan<byte> frame, in FrameMetadata metadata)
    {
        if (Volatile.Read(ref _connection) is null) return DropReason.LinkDown;
        if (frame.Length > StreamFraming.MaxFrameLength) return DropReason.TooBig;
        var buffer = (frame.Length <= _small.BufferCapacity ? _small.Rent() : null) ?? _large.Rent();
        if (buffer is null) return DropReason.NoBuffer;
        if (!buffer.TrySet(frame, metadata))
        {
            buffer.Return();
            return DropReason.TooBig;
        }
        if (_queue.Writer.TryWrite(buffer)) return DropReason.None;
        buffer.Return();
        return DropReason.QueueFull;
    }

    /// <summary>
    /// Listens and serves until stopped. A listen that fails (the address is taken, say) is tried again
    /// every <see cref="StreamPortOptions.ReconnectDelay"/>, as the connecting side redials, and said
    /// once per run of failures.
    /// </summary>
    private async Task ListenLoop()
    {
        var ct = _stop.Token;
        var failing = false;
        while (!ct.IsCancellationRequested)
        {
            Socket listener;
            try
            {
                listener = Listen();
            }
            catch (Exception e) when (e is SocketException or IOException or UnauthorizedAccessException)
            {
                if (!failing) Log?.Invoke($"stream port {Name}: listen on {_options.Endpoint} failed: {(e is SocketException s ? s.SocketErrorCode : e.Message)}; retrying every {_options.ReconnectDelay.TotalMilliseconds:0} ms");
                failing = true;
                try
                {
                    await Task.Delay(_options.ReconnectDelay, ct).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                continue;
            }
            if (failing) Log?.Invoke($"stream port {Name}: listening on {_options.Endpoint}");
            try
            {
                // Returns only when stopped: the listener is closed here and nowhere else.
                await ListeningSocket.AcceptAsync(listener, peer => OnPeer(peer, ct), message => Log?.Invoke($"stream port {Name}: {message}"), ct).ConfigureAwait(false);
            }
            finally
            {
                listener.Dispose();
            }
        }
    }

    private Socket Listen()
    {
        if (_options.Endpoint is UnixDomainSocketEndPoint unix)
            return ListeningSocket.Unix(unix.ToString(), UnixFileMode.UserRead | UnixFileMode.UserWrite, backlog: 4);
        var listener = CreateSocket();
        try
        {
            listener.Bind(_options.Endpoint);
            listener.Listen(4);
            return listener;
        }
        catch
        {
            listener.Dispose();
            throw;
        }
    }

    /// <summary>A connection to the listening port: served when it is from an allowed peer and none is served yet, else refused and counted.</summary>
    private void OnPeer(Socket peer, CancellationToken ct)
    {
        var allowed = Allowed(peer, out var who);
        // The slot is taken here, before the next accept, so a peer right behind this one finds it taken.
        if (allowed && TryClaim(peer))
        {
            // No token for Task.Run: Serve must run even when stopping, as it is what closes the socket.
            _ = Task.Run(() => Serve(peer, ct));
            return;
        }
        Interlocked.Increment(ref _refused);
        Counters.CountDrop(DropReason.UnknownPeer);
        Log?.Invoke($"stream port {Name}: refused {who}{(allowed ? " (already serving a peer)" : "")}");
        peer.Dispose();
    }

    /// <summary>Makes <paramref name="socket"/> the port's one connection, unless it has one already.</summary>
    private bool TryClaim(Socket socket)
    {
        if (Interlocked.CompareExchange(ref _connection, socket, null) is not null) return false;
        Interlocked.Increment(ref _connections);
        return true;
    }

    private async Task ConnectLoop()
    {
        var ct = _stop.Token;
        while (!ct.IsCancellationRequested)
        {
            var socket = CreateSocket();
            try
            {
                await socket.ConnectAsync(_options.Endpoint, ct).ConfigureAwait(false);
                // Always free: the one connection the port has ends before the next is dialled.
                TryClaim(socket);
                await Serve(socket, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                socket.Dispose();
                return;
            }
            catch (SocketException)
            {
                socket.Dispose();
            }
            try
            {
                await Task.Delay(_options.ReconnectDelay, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private Socket CreateSocket() => _options.Endpoint is UnixDomainSocketEndPoint
        ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
        : new Socket(_options.Endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };

    private bool Allowed(Socket peer, out string who)
    {
        if (peer.AddressFamily == AddressFamily.Unix)
        {
            var uid = ListeningSocket.PeerUid(peer) ?? uint.MaxValue;
            who = $"uid {uid}";
            if (_options.AllowedUids.Count > 0) return _options.AllowedUids.Contains(uid);
            return uid == 0 || uid == Interop.Libc.GetEuid();
        }
        var remote = (IPEndPoint)peer.RemoteEndPoint!;
        who = remote.ToString();
        var address = remote.Address.IsIPv4MappedToIPv6 ? remote.Address.MapToIPv4() : remote.Address;
        if (_options.AllowedAddresses.Count > 0) return _options.AllowedAddresses.Contains(address);
        return IPAddress.IsLoopback(address);
    }

    /// <summary>Runs the claimed connection until it closes, fails, or sends a bad length; then closes it and frees the slot.</summary>
    private async Task Serve(Socket socket, CancellationToken ct)
    {
        try
        {
            await ReadLoop(socket, ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException)
        {
        }
        finally
        {
            Interlocked.CompareExchange(ref _connection, null, socket);
            // Also ends a send the writer has blocked on this peer.
            socket.Dispose();
        }
    }

    private async Task ReadLoop(Socket socket, CancellationToken ct)
    {
        // Room for the largest frame QEMU sends plus its prefix, and then some so reads batch several frames.
        var buffer = new byte[2 * (StreamFraming.MaxFrameLength + StreamFraming.PrefixLength)];
        var filled = 0;
        while (true)
        {
            var n = await socket.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None, ct).ConfigureAwait(false);
            if (n == 0) return;
            filled += n;
            var start = 0;
            while (true)
            {
                var status = StreamFraming.TryRead(buffer.AsSpan(start, filled - start), out var length);
                if (status == StreamFrameStatus.NeedMore) break;
                if (status == StreamFrameStatus.Malformed)
                {
                    Interlocked.Increment(ref _malformedClosures);
                    Counters.CountDrop(DropReason.Malformed);
                    Log?.Invoke($"stream port {Name}: bad length prefix, closing the connection");
                    return;
                }
                var metadata = FrameMetadata.Plain(length);
                Deliver(buffer, start + StreamFraming.PrefixLength, ref metadata);
                start += StreamFraming.PrefixLength + length;
            }
            if (start > 0)
            {
                buffer.AsSpan(start, filled - start).CopyTo(buffer);
                filled -= start;
            }
        }
    }

    /// <summary>
    /// Sends queued frames to the peer connected at the time, for the whole life of the port; a frame
    /// that finds no peer, or one whose send already failed, is dropped as <see cref="DropReason.LinkDown"/>.
    /// </summary>
    private async Task WriteLoop()
    {
        var reader = _queue.Reader;
        Socket? failed = null;
        // No token: waiting with a cancellable one makes the channel allocate a waiter each time the
        // queue runs dry, about once a frame at ordinary rates. Stop completes the queue instead.
        while (await reader.WaitToReadAsync(CancellationToken.None).ConfigureAwait(false))
        {
            while (reader.TryRead(out var buffer))
            {
                var socket = Volatile.Read(ref _connection);
                try
                {
                    if (socket is null || socket == failed)
                    {
                        Counters.CountDrop(DropReason.LinkDown);
                        continue;
                    }
                    // The prefix goes in the headroom so frame and length leave in one send.
                    var start = buffer.Offset - StreamFraming.PrefixLength;
                    StreamFraming.WritePrefix(buffer.Data.AsSpan(start), buffer.Length);
                    var memory = buffer.Data.AsMemory(start, buffer.Length + StreamFraming.PrefixLength);
                    while (memory.Length > 0)
                    {
                        var sent = await socket.SendAsync(memory, SocketFlags.None).ConfigureAwait(false);
                        memory = memory[sent..];
                    }
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException)
                {
                    // Closing it ends the connection's read loop, which frees the slot.
                    Counters.CountDrop(DropReason.TxError);
                    failed = socket;
                    socket!.Dispose();
                }
                finally
                {
                    buffer.Return();
                }
            }
        }
    }

    private void Stop()
    {
        if (_stop.IsCancellationRequested) return;
        _stop.Cancel();
        // The writer drains what is queued and ends (see WriteLoop).
        _queue.Writer.TryComplete();
        Volatile.Read(ref _connection)?.Dispose();
        try
        {
            _run?.Wait(TimeSpan.FromSeconds(5));
            _write?.Wait(TimeSpan.FromSeconds(5));
        }
        catch (AggregateException)
        {
        }
        if (_options.Role == StreamRole.Listen && _options.Endpoint is UnixDomainSocketEndPoint unix)
        {
            try { File.Delete(unix.ToString()); } catch (IOException) { }
        }
    }

    public override void Dispose()
    {
        base.Dispose();
        Stop();
    }
}
