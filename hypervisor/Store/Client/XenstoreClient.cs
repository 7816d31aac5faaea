using System.Buffers;
using System.Collections.Concurrent;
using System.Globalization;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Text;
using System.Threading.Channels;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Store.Transports;

namespace XenIo.Hypervisor.Store.Client;

/// <summary>
/// An async xenstore client over either transport (the dom0 Unix socket or a domain's ring). Requests
/// are multiplexed by req_id: any number may be in flight from any thread; one writer sends, one reader
/// routes replies to their callers and watch events to their subscriptions.
/// </summary>
public sealed class XenstoreClient : IAsyncDisposable
{
    private readonly IXenstoreStream _stream;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly ConcurrentDictionary<uint, TaskCompletionSource<Reply>> _pending = new();
    private readonly ConcurrentDictionary<string, Channel<XenstoreWatchEvent>> _watches = new(StringComparer.Ordinal);
    private readonly Task _reader;
    private int _nextReqId;
    private int _nextToken;
    private volatile Exception? _failure;

    private readonly record struct Reply(XsdSockmsgType Type, byte[] Payload);

    public XenstoreClient(IXenstoreStream stream)
    {
        _stream = stream;
        _reader = Task.Run(ReadLoopAsync);
    }

    /// <summary>Connects to xenstored's Unix socket (dom0).</summary>
    public static async Task<XenstoreClient> ConnectAsync(string socketPath, CancellationToken cancellationToken = default)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        return new XenstoreClient(new SocketXenstoreStream(socket));
    }

    /// <summary>A guest's client on its xenstore ring page (the frontend side of xenstore_domain_interface).</summary>
    public static XenstoreClient OverRing(Memory<byte> page, IEventChannelDoorbell doorbell) =>
        new(new XenstoreRingStream(page, doorbell, isDaemon: false, "ring client"));

    // ---- requests -------------------------------------------------------------------------------

    /// <summary>Sends one request and returns the reply payload; throws <see cref="XenstoreException"/> on XS_ERROR.</summary>
    public async Task<byte[]> RequestAsync(XsdSockmsgType type, ReadOnlyMemory<byte> payload, uint transaction = 0,
        string? pathForErrors = null, CancellationToken cancellationToken = default)
    {
        if (payload.Length > XenstoreLimits.PayloadMax) throw new ArgumentException("payload larger than XENSTORE_PAYLOAD_MAX");
        if (_failure is { } f) throw new IOException("xenstore connection lost", f);
        var reqId = (uint)Interlocked.Increment(ref _nextReqId);
        var tcs = new TaskCompletionSource<Reply>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[reqId] = tcs;
        var buffer = ArrayPool<byte>.Shared.Rent(XsdCodec.HeaderSize + payload.Length);
        try
        {
            XsdCodec.WriteHeader(buffer, type, reqId, transaction, (uint)payload.Length);
            payload.Span.CopyTo(buffer.AsSpan(XsdCodec.HeaderSize));
            await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                await _stream.WriteAsync(buffer.AsMemory(0, XsdCodec.HeaderSize + payload.Length), cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                _writeLock.Release();
            }
        }
        catch
        {
            _pending.TryRemove(reqId, out _);
            throw;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        if (_failure is { } f2) tcs.TrySetException(new IOException("xenstore connection lost", f2));
        Reply reply;
        using (cancellationToken.Register(() => tcs.TrySetCanceled(cancellationToken)))
            reply = await tcs.Task.ConfigureAwait(false);
        if (reply.Type == XsdSockmsgType.Error) throw new XenstoreException(XsErrorNames.Parse(reply.Payload), type.ToString(), pathForErrors);
        return reply.Payload;
    }

    private Task<byte[]> Request(XsdSockmsgType type, uint tx, string? path, CancellationToken ct, params string[] args)
    {
        var bytes = Encoding.ASCII.GetByteCount(string.Concat(args)) + args.Length;
        var payload = new byte[bytes];
        var pos = 0;
        foreach (var a in args)
        {
            pos += Encoding.ASCII.GetBytes(a, payload.AsSpan(pos));
            payload[pos++] = 0;
        }
        return RequestAsync(type, payload, tx, path, ct);
    }

    public async Task<byte[]> ReadBytesAsync(string path, uint transaction = 0, CancellationToken cancellationToken = default) =>
        await Request(XsdSockmsgType.Read, transaction, path, cancellationToken, path).ConfigureAwait(false);

    public async Task<string> ReadAsync(string path, uint transaction = 0, CancellationToken cancellationToken = default) =>
        Encoding.UTF8.GetString(await ReadBytesAsync(path, transaction, cancellationToken).ConfigureAwait(false));

    /// <summary>Reads a node, or null if it does not exist.</summary>
    public async Task<string?> TryReadAsync(string path, uint transaction = 0, CancellationToken cancellationToken = default)
    {
        try
        {
            return await ReadAsync(path, transaction, cancellationToken).ConfigureAwait(false);
        }
        catch (XenstoreException e) when (e.Error == XsError.ENOENT)
        {
            return null;
        }
    }

    public Task WriteAsync(string path, string value, uint transaction = 0, CancellationToken cancellationToken = default) =>
        WriteAsync(path, Encoding.UTF8.GetBytes(value), transaction, cancellationToken);

    public Task WriteAsync(string path, ReadOnlySpan<byte> value, uint transaction = 0, CancellationToken cancellationToken = default)
    {
        var payload = new byte[Encoding.ASCII.GetByteCount(path) + 1 + value.Length];
        var n = Encoding.ASCII.GetBytes(path, payload);
        payload[n] = 0;
        value.CopyTo(payload.AsSpan(n + 1));
        return RequestAsync(XsdSockmsgType.Write, payload, transaction, path, cancellationToken);
    }

    public Task MkdirAsync(string path, uint transaction = 0, CancellationToken cancellationToken = default) =>
        Request(XsdSockmsgType.Mkdir, transaction, path, cancellationToken, path);

    public Task RmAsync(string path, uint transaction = 0, CancellationToken cancellationToken = default) =>
        Request(XsdSockmsgType.Rm, transaction, path, cancellationToken, path);

    /// <summary>Lists a node's children; falls back to XS_DIRECTORY_PART when the list exceeds one message.</summary>
    public async Task<string[]> DirectoryAsync(string path, uint transaction = 0, CancellationToken cancellationToken = default)
    {
        try
        {
            return SplitStrings(await Request(XsdSockmsgType.Directory, transaction, path, cancellationToken, path).ConfigureAwait(false));
        }
        catch (XenstoreException e) when (e.Error == XsError.E2BIG)
        {
            return await DirectoryPartAsync(path, transaction, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Lists children in pieces (XS_DIRECTORY_PART), restarting if the node changes meanwhile.</summary>
    public async Task<string[]> DirectoryPartAsync(string path, uint transaction = 0, CancellationToken cancellationToken = default)
    {
        while (true)
        {
            var names = new List<string>();
            string? generation = null;
            var offset = 0;
            var restart = false;
            while (true)
            {
                var reply = await Request(XsdSockmsgType.DirectoryPart, transaction, path, cancellationToken, path,
                    offset.ToString(CultureInfo.InvariantCulture)).ConfigureAwait(false);
                var genEnd = Array.IndexOf(reply, (byte)0);
                if (genEnd < 0) throw new XenstoreException(XsError.EIO, "DIRECTORY_PART", path);
                var gen = Encoding.ASCII.GetString(reply, 0, genEnd);
                if (generation is not null && gen != generation) { restart = true; break; }
                generation = gen;
                var body = reply.AsSpan(genEnd + 1);
                // The list ends with an empty string (an extra NUL).
                var done = body.Length == 0 || body[^1] == 0 && (body.Length == 1 || body[^2] == 0);
                if (done) body = body.Length > 0 ? body[..^1] : body;
                foreach (var name in SplitStrings(body))
                {
                    names.Add(name);
                    offset += name.Length + 1;
                }
                if (done) break;
            }
            if (!restart) return [.. names];
        }
    }

    public async Task<XenstorePermission[]> GetPermsAsync(string path, uint transaction = 0, CancellationToken cancellationToken = default)
    {
        var parts = SplitStrings(await Request(XsdSockmsgType.GetPerms, transaction, path, cancellationToken, path).ConfigureAwait(false));
        var perms = new XenstorePermission[parts.Length];
        for (var i = 0; i < parts.Length; i++)
            if (!XenstorePermission.TryParse(parts[i], out perms[i])) throw new XenstoreException(XsError.EIO, "GET_PERMS", path);
        return perms;
    }

    public Task SetPermsAsync(string path, XenstorePermission[] perms, uint transaction = 0, CancellationToken cancellationToken = default) =>
        Request(XsdSockmsgType.SetPerms, transaction, path, cancellationToken, [path, .. perms.Select(p => p.ToString())]);

    public async Task<string> GetDomainPathAsync(ushort domId, CancellationToken cancellationToken = default) =>
        SplitStrings(await Request(XsdSockmsgType.GetDomainPath, 0, null, cancellationToken, domId.ToString(CultureInfo.InvariantCulture)).ConfigureAwait(false))[0];

    public Task IntroduceAsync(ushort domId, ulong gfn, uint port, CancellationToken cancellationToken = default) =>
        Request(XsdSockmsgType.Introduce, 0, null, cancellationToken, domId.ToString(CultureInfo.InvariantCulture),
            gfn.ToString(CultureInfo.InvariantCulture), port.ToString(CultureInfo.InvariantCulture));

    public Task ReleaseAsync(ushort domId, CancellationToken cancellationToken = default) =>
        Request(XsdSockmsgType.Release, 0, null, cancellationToken, domId.ToString(CultureInfo.InvariantCulture));

    public async Task<bool> IsDomainIntroducedAsync(ushort domId, CancellationToken cancellationToken = default) =>
        (await Request(XsdSockmsgType.IsDomainIntroduced, 0, null, cancellationToken, domId.ToString(CultureInfo.InvariantCulture)).ConfigureAwait(false)) is [(byte)'T', ..];

    public Task ResetWatchesAsync(CancellationToken cancellationToken = default) =>
        RequestAsync(XsdSockmsgType.ResetWatches, "\0"u8.ToArray(), 0, null, cancellationToken);

    public async Task<string> ControlAsync(params string[] args) =>
        Encoding.ASCII.GetString(await Request(XsdSockmsgType.Control, 0, null, default, args).ConfigureAwait(false)).TrimEnd('\0');

    // ---- transactions ---------------------------------------------------------------------------

    public async Task<uint> TransactionStartAsync(CancellationToken cancellationToken = default)
    {
        var reply = await RequestAsync(XsdSockmsgType.TransactionStart, "\0"u8.ToArray(), 0, null, cancellationToken).ConfigureAwait(false);
        return uint.Parse(SplitStrings(reply)[0], CultureInfo.InvariantCulture);
    }

    /// <summary>Ends a transaction; false when a commit lost to another change (EAGAIN).</summary>
    public async Task<bool> TransactionEndAsync(uint transaction, bool commit, CancellationToken cancellationToken = default)
    {
        try
        {
            await RequestAsync(XsdSockmsgType.TransactionEnd, commit ? "T\0"u8.ToArray() : "F\0"u8.ToArray(), transaction, null, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (XenstoreException e) when (e.Error == XsError.EAGAIN)
        {
            return false;
        }
    }

    /// <summary>
    /// Runs <paramref name="body"/> in a transaction and commits, starting again while the commit is
    /// answered EAGAIN (up to <paramref name="maxAttempts"/>). An exception aborts the transaction.
    /// </summary>
    public async Task<T> TransactAsync<T>(Func<uint, Task<T>> body, int maxAttempts = 100, CancellationToken cancellationToken = default)
    {
        for (var attempt = 1; ; attempt++)
        {
            var tx = await TransactionStartAsync(cancellationToken).ConfigureAwait(false);
            T result;
            try
            {
                result = await body(tx).ConfigureAwait(false);
            }
            catch (XenstoreException e) when (e.Error == XsError.EAGAIN && attempt < maxAttempts)
            {
                await TransactionEndAsync(tx, false, cancellationToken).ConfigureAwait(false);
                continue;
            }
            catch
            {
                try { await TransactionEndAsync(tx, false, cancellationToken).ConfigureAwait(false); } catch (XenstoreException) { }
                throw;
            }
            if (await TransactionEndAsync(tx, true, cancellationToken).ConfigureAwait(false)) return result;
            if (attempt >= maxAttempts) throw new XenstoreException(XsError.EAGAIN, "TRANSACTION_END", null);
        }
    }

    public Task TransactAsync(Func<uint, Task> body, int maxAttempts = 100, CancellationToken cancellationToken = default) =>
        TransactAsync<bool>(async tx => { await body(tx).ConfigureAwait(false); return true; }, maxAttempts, cancellationToken);

    /// <summary>
    /// Writes <paramref name="key"/> under a device directory only while the directory exists, in one
    /// transaction (as Linux's xenbus_switch_state reads the state before writing it): a backend that is
    /// still catching up never brings back a directory the toolstack removed, which would look like a
    /// device to every later scan. False when the directory was gone and nothing was written.
    /// </summary>
    public Task<bool> WriteUnderAsync(string directory, string key, string value, CancellationToken cancellationToken = default) =>
        TransactAsync(async tx =>
        {
            if (await TryReadAsync(directory, tx, cancellationToken).ConfigureAwait(false) is null) return false;
            await WriteAsync($"{directory}/{key}", value, tx, cancellationToken).ConfigureAwait(false);
            return true;
        }, cancellationToken: cancellationToken);

    // ---- watches --------------------------------------------------------------------------------

    /// <summary>
    /// Sets a watch and returns its subscription once xenstored has accepted it; the first event (the
    /// one every new watch fires) is in its channel. Disposing it removes the watch.
    /// </summary>
    public async Task<XenstoreWatchSubscription> SubscribeAsync(string path, string? token = null, int capacity = 1024,
        CancellationToken cancellationToken = default)
    {
        token ??= "xenio-" + Interlocked.Increment(ref _nextToken).ToString(CultureInfo.InvariantCulture);
        var channel = Channel.CreateBounded<XenstoreWatchEvent>(new BoundedChannelOptions(capacity)
        {
            FullMode = BoundedChannelFullMode.DropOldest,
            SingleReader = true,
            SingleWriter = true,
        });
        if (!_watches.TryAdd(token, channel)) throw new ArgumentException($"watch token '{token}' is in use", nameof(token));
        try
        {
            await Request(XsdSockmsgType.Watch, 0, path, cancellationToken, path, token).ConfigureAwait(false);
        }
        catch
        {
            _watches.TryRemove(token, out _);
            throw;
        }
        return new XenstoreWatchSubscription(this, path, token, channel.Reader);
    }

    /// <summary>Watches <paramref name="path"/> and its subtree as a stream of events until cancelled.</summary>
    public async IAsyncEnumerable<XenstoreWatchEvent> WatchAsync(string path, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await using var subscription = await SubscribeAsync(path, cancellationToken: cancellationToken).ConfigureAwait(false);
        await foreach (var e in subscription.Events.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            yield return e;
    }

    internal async Task UnwatchAsync(string path, string token)
    {
        if (_watches.TryRemove(token, out var channel)) channel.Writer.TryComplete();
        if (_failure is not null) return;
        try
        {
            await Request(XsdSockmsgType.Unwatch, 0, path, default, path, token).ConfigureAwait(false);
        }
        catch (XenstoreException) { }
        catch (IOException) { }
    }

    // ---- reading --------------------------------------------------------------------------------

    private async Task ReadLoopAsync()
    {
        var buffer = new byte[4 * XsdCodec.MaxMessage];
        int start = 0, end = 0;
        try
        {
            while (true)
            {
                while (end - start >= XsdCodec.HeaderSize)
                {
                    var header = XsdCodec.ReadHeader(buffer.AsSpan(start));
                    if (header.Len > XenstoreLimits.PayloadMax) throw new IOException($"xenstored sent a {header.Len}-byte payload");
                    var total = XsdCodec.HeaderSize + (int)header.Len;
                    if (end - start < total) break;
                    Deliver(header, buffer.AsSpan(start + XsdCodec.HeaderSize, (int)header.Len));
                    start += total;
                }
                if (start == end) start = end = 0;
                else if (start > 0)
                {
                    buffer.AsSpan(start, end - start).CopyTo(buffer);
                    end -= start;
                    start = 0;
                }
                var n = await _stream.ReadAsync(buffer.AsMemory(end), CancellationToken.None).ConfigureAwait(false);
                if (n <= 0) throw new IOException("xenstored closed the connection");
                end += n;
            }
        }
        catch (Exception e)
        {
            _failure = e;
            foreach (var (id, tcs) in _pending)
                if (_pending.TryRemove(id, out _)) tcs.TrySetException(new IOException("xenstore connection lost", e));
            foreach (var (_, channel) in _watches) channel.Writer.TryComplete();
        }
    }

    private void Deliver(in XsdSockmsg header, ReadOnlySpan<byte> payload)
    {
        if (header.Type == XsdSockmsgType.WatchEvent)
        {
            var nul = payload.IndexOf((byte)0);
            if (nul < 0) return;
            var path = Encoding.ASCII.GetString(payload[..nul]);
            var rest = payload[(nul + 1)..];
            var tokenEnd = rest.IndexOf((byte)0);
            var token = Encoding.Latin1.GetString(tokenEnd < 0 ? rest : rest[..tokenEnd]);
            if (_watches.TryGetValue(token, out var channel)) channel.Writer.TryWrite(new XenstoreWatchEvent(path, token));
            return;
        }
        if (_pending.TryRemove(header.ReqId, out var tcs)) tcs.TrySetResult(new Reply(header.Type, payload.ToArray()));
    }

    private static string[] SplitStrings(ReadOnlySpan<byte> payload)
    {
        var list = new List<string>();
        while (payload.Length > 0)
        {
            var nul = payload.IndexOf((byte)0);
            if (nul < 0) { list.Add(Encoding.UTF8.GetString(payload)); break; }
            list.Add(Encoding.UTF8.GetString(payload[..nul]));
            payload = payload[(nul + 1)..];
        }
        return [.. list];
    }

    public async ValueTask DisposeAsync()
    {
        _stream.Abort();
        await _stream.DisposeAsync().ConfigureAwait(false);
        try { await _reader.ConfigureAwait(false); } catch (Exception) { }
        _writeLock.Dispose();
    }
}

/// <summary>A watch set by <see cref="XenstoreClient.SubscribeAsync"/>; disposing it removes the watch.</summary>
public sealed class XenstoreWatchSubscription(XenstoreClient client, string path, string token, ChannelReader<XenstoreWatchEvent> events)
    : IAsyncDisposable
{
    public string Path { get; } = path;
    public string Token { get; } = token;
    public ChannelReader<XenstoreWatchEvent> Events { get; } = events;

    public ValueTask DisposeAsync() => new(client.UnwatchAsync(Path, Token));
}
