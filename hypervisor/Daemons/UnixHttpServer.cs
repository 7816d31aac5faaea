using System.Buffers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace XenIo.Hypervisor.Daemons;

/// <summary>
/// One parsed HTTP/1.1 request. <see cref="Path"/> is as sent (for messages); <see cref="Segments"/> are
/// its parts between slashes, each percent-decoded on its own, so an escaped slash stays inside its part.
/// </summary>
public sealed record HttpRequest(string Method, string Path, string[] Segments, IReadOnlyDictionary<string, string> Query, IReadOnlyDictionary<string, string> Headers, byte[] Body);

/// <summary>
/// The daemons' control APIs (hyperd's, netback's) over HTTP/1.1 on a Unix socket (mode 0600): request
/// line, headers, Content-Length bodies; one request per connection (<c>Connection: close</c>), replies
/// with Content-Length or chunked streams. Requests come from local users who passed the socket's
/// permissions, but are still parsed defensively: bounded header size and body and a deadline for
/// them to arrive, so a stuck or malicious client costs one connection; malformed input answers 400
/// and closes; a handler that fails is logged and answers 500 with <c>{"error": …}</c>. The CLI talks to it with HttpClient over the same socket.
/// </summary>
public sealed class UnixHttpServer : IAsyncDisposable
{
    public const int MaxHeaderBytes = 16 * 1024;
    public const int MaxBodyBytes = 1024 * 1024;
    private static readonly TimeSpan DefaultRequestTimeout = TimeSpan.FromSeconds(30);
    private readonly TimeSpan _requestTimeout;
    private readonly Socket _listener;
    private readonly Func<HttpRequest, HttpResponse, CancellationToken, Task> _handler;
    private readonly Action<string> _log;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _acceptLoop;

    /// <param name="requestTimeout">How long a client has to send its whole request (30 s when null).</param>
    public UnixHttpServer(string socketPath, Func<HttpRequest, HttpResponse, CancellationToken, Task> handler, Action<string>? log = null, TimeSpan? requestTimeout = null)
    {
        _handler = handler;
        _requestTimeout = requestTimeout ?? DefaultRequestTimeout;
        _log = log ?? (_ => { });
        SocketPath = socketPath;
        _listener = ListeningSocket.Unix(socketPath, UnixFileMode.UserRead | UnixFileMode.UserWrite, backlog: 64);
        _acceptLoop = ListeningSocket.AcceptAsync(_listener, client => _ = Task.Run(() => Serve(client)), message => _log($"{SocketPath}: {message}"), _stop.Token);
    }

    public string SocketPath { get; }

    private async Task Serve(Socket client)
    {
        using var _ = client;
        await using var stream = new NetworkStream(client, ownsSocket: false);
        var response = new HttpResponse(stream);
        HttpRequest? request = null;
        try
        {
            // A client that connects and never finishes its request holds one task, for this long at most.
            using (var deadline = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token))
            {
                deadline.CancelAfter(_requestTimeout);
                request = await ReadRequest(stream, deadline.Token).ConfigureAwait(false);
            }
            if (request is null)
            {
                await response.WriteTextAsync(400, "bad request\n").ConfigureAwait(false);
                await LingeringClose(client).ConfigureAwait(false);
                return;
            }
            using var disconnect = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
            await _handler(request, response with { Client = client, Disconnected = disconnect }, disconnect.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // The client went away; nothing to answer.
        }
        catch (Exception e)
        {
            _log($"{SocketPath}: {request?.Method} {request?.Path} failed: {e.GetType().Name}: {e.Message}");
            if (!response.Started)
            {
                try { await response.WriteErrorAsync(500, e.Message).ConfigureAwait(false); }
                catch (Exception) { }
            }
        }
    }

    /// <summary>
    /// Closing with unread input makes the kernel send RST, which can destroy the 400 before the client
    /// reads it; so stop sending, then discard a bounded amount of input for a short while (as nginx does).
    /// </summary>
    private static async Task LingeringClose(Socket client)
    {
        try
        {
            client.Shutdown(SocketShutdown.Send);
            using var linger = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            var sink = new byte[4096];
            var discarded = 0;
            int n;
            while (discarded < 256 * 1024 && (n = await client.ReceiveAsync(sink, SocketFlags.None, linger.Token).ConfigureAwait(false)) > 0) discarded += n;
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException) { }
    }

    /// <summary>Reads one request; null when malformed or over the limits.</summary>
    internal static async Task<HttpRequest?> ReadRequest(Stream stream, CancellationToken cancellationToken)
    {
        var buffer = new byte[MaxHeaderBytes];
        var filled = 0;
        int end;
        while ((end = buffer.AsSpan(0, filled).IndexOf("\r\n\r\n"u8)) < 0)
        {
            if (filled == buffer.Length) return null;
            var n = await stream.ReadAsync(buffer.AsMemory(filled), cancellationToken).ConfigureAwait(false);
            if (n == 0) return null;
            filled += n;
        }
        var head = Encoding.ASCII.GetString(buffer, 0, end).Split("\r\n");
        var line = head[0].Split(' ');
        if (line.Length != 3 || !line[2].StartsWith("HTTP/1.", StringComparison.Ordinal) || line[1].Length == 0 || line[1][0] != '/') return null;
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var h in head.AsSpan(1))
        {
            var colon = h.IndexOf(':');
            if (colon <= 0) return null;
            headers[h[..colon].Trim()] = h[(colon + 1)..].Trim();
        }
        if (headers.TryGetValue("Transfer-Encoding", out _)) return null; // chunked request bodies are not needed by any endpoint
        var length = 0;
        if (headers.TryGetValue("Content-Length", out var cl) && (!int.TryParse(cl, out length) || length < 0 || length > MaxBodyBytes)) return null;
        var body = new byte[length];
        var have = Math.Min(length, filled - end - 4);
        Array.Copy(buffer, end + 4, body, 0, have);
        if (have < length) await stream.ReadExactlyAsync(body.AsMemory(have), cancellationToken).ConfigureAwait(false);
        var target = line[1];
        var q = target.IndexOf('?');
        var path = q < 0 ? target : target[..q];
        var segments = path.Split('/', StringSplitOptions.RemoveEmptyEntries).Select(Uri.UnescapeDataString).ToArray();
        var query = new Dictionary<string, string>(StringComparer.Ordinal);
        if (q >= 0)
            foreach (var pair in target[(q + 1)..].Split('&', StringSplitOptions.RemoveEmptyEntries))
            {
                var eq = pair.IndexOf('=');
                var key = Uri.UnescapeDataString((eq < 0 ? pair : pair[..eq]).Replace('+', ' '));
                query[key] = eq < 0 ? "" : Uri.UnescapeDataString(pair[(eq + 1)..].Replace('+', ' '));
            }
        return new HttpRequest(line[0], path, segments, query, headers, body);
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Dispose();
        try { await _acceptLoop.ConfigureAwait(false); }
        catch (Exception) { }
        try { File.Delete(SocketPath); }
        catch (IOException) { }
        _stop.Dispose();
    }
}

/// <summary>Writes one response: whole (Content-Length) or streamed (chunked).</summary>
public sealed record HttpResponse(Stream Stream)
{
    public Socket? Client { get; init; }
    public CancellationTokenSource? Disconnected { get; init; }
    public bool Started { get; private set; }

    private static string Reason(int status) => status switch
    {
        200 => "OK", 201 => "Created", 204 => "No Content", 400 => "Bad Request", 404 => "Not Found", 405 => "Method Not Allowed",
        409 => "Conflict", 500 => "Internal Server Error", 504 => "Gateway Timeout", 507 => "Insufficient Storage", _ => "Status",
    };

    public async Task WriteAsync(int status, string contentType, ReadOnlyMemory<byte> body)
    {
        Started = true;
        var head = Encoding.ASCII.GetBytes($"HTTP/1.1 {status} {Reason(status)}\r\nContent-Type: {contentType}\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n");
        await Stream.WriteAsync(head).ConfigureAwait(false);
        await Stream.WriteAsync(body).ConfigureAwait(false);
        await Stream.FlushAsync().ConfigureAwait(false);
    }

    public Task WriteTextAsync(int status, string text) => WriteAsync(status, "text/plain; charset=utf-8", Encoding.UTF8.GetBytes(text));

    public Task WriteJsonAsync(int status, byte[] json) => WriteAsync(status, "application/json", json);

    /// <summary>An error the way the daemons' APIs answer one: <c>{"error": "..."}</c>.</summary>
    public Task WriteErrorAsync(int status, string message)
    {
        var body = new ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(body))
        {
            json.WriteStartObject();
            json.WriteString("error", message);
            json.WriteEndObject();
        }
        return WriteJsonAsync(status, body.WrittenSpan.ToArray());
    }

    /// <summary>Starts a chunked response; write chunks with <see cref="WriteChunkAsync"/>, end with <see cref="EndChunksAsync"/>.</summary>
    public async Task StartChunkedAsync(int status, string contentType)
    {
        Started = true;
        var head = Encoding.ASCII.GetBytes($"HTTP/1.1 {status} {Reason(status)}\r\nContent-Type: {contentType}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
        await Stream.WriteAsync(head).ConfigureAwait(false);
        await Stream.FlushAsync().ConfigureAwait(false);
    }

    public async Task WriteChunkAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        if (data.Length == 0) return;
        await Stream.WriteAsync(Encoding.ASCII.GetBytes($"{data.Length:x}\r\n"), cancellationToken).ConfigureAwait(false);
        await Stream.WriteAsync(data, cancellationToken).ConfigureAwait(false);
        await Stream.WriteAsync("\r\n"u8.ToArray(), cancellationToken).ConfigureAwait(false);
        await Stream.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task EndChunksAsync() => await Stream.WriteAsync("0\r\n\r\n"u8.ToArray()).ConfigureAwait(false);
}
