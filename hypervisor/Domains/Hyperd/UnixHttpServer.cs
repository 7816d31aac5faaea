using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using XenIo.Hypervisor.Daemons;

namespace XenIo.Hypervisor.Domains.Hyperd;

/// <summary>One HTTP request as <see cref="UnixHttpServer"/> parsed it.</summary>
public sealed record HttpRequest(string Method, string Path, string Query, byte[] Body);

/// <summary>An HTTP response: status and a JSON (or empty) body.</summary>
public sealed record HttpResponse(int Status, byte[] Body)
{
    public static HttpResponse Empty(int status = 204) => new(status, []);
}

/// <summary>
/// A small HTTP/1.1 server on a Unix socket (0600) for a daemon's control API: one request per
/// connection (<c>Connection: close</c>), <c>Content-Length</c> bodies only, bounded header and body
/// sizes and a read deadline, so a stuck or malicious local client costs one connection and nothing
/// else. The CLI talks to it with HttpClient over the same socket.
/// </summary>
public sealed class UnixHttpServer : IAsyncDisposable
{
    public const int MaxHeaderBytes = 16 * 1024;
    public const int MaxBodyBytes = 1 << 20;
    private static readonly TimeSpan ReadTimeout = TimeSpan.FromSeconds(30);

    private readonly Socket _listener;
    private readonly Func<HttpRequest, CancellationToken, Task<HttpResponse>> _handler;
    private readonly ILogger _log;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accept;

    public UnixHttpServer(string socketPath, Func<HttpRequest, CancellationToken, Task<HttpResponse>> handler, ILogger? logger = null)
    {
        _handler = handler;
        _log = logger ?? NullLogger.Instance;
        SocketPath = socketPath;
        _listener = ListeningSocket.Unix(socketPath, UnixFileMode.UserRead | UnixFileMode.UserWrite, backlog: 64);
        _accept = ListeningSocket.AcceptAsync(_listener, client => _ = Task.Run(() => ServeAsync(client)), message => _log.LogWarning("{Socket}: {Message}", SocketPath, message), _stop.Token);
    }

    public string SocketPath { get; }

    private async Task ServeAsync(Socket client)
    {
        using var _ = client;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        timeout.CancelAfter(ReadTimeout);
        HttpResponse response;
        HttpRequest? request = null;
        try
        {
            request = await ReadRequestAsync(client, timeout.Token).ConfigureAwait(false);
            response = request is null
                ? Error(400, "malformed HTTP request")
                : await _handler(request, _stop.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            return;
        }
        catch (Exception e) when (e is SocketException or IOException)
        {
            return;
        }
        catch (Exception e)
        {
            _log.LogError(e, "{Method} {Path} failed", request?.Method, request?.Path);
            response = Error(500, e.Message);
        }
        try { await WriteResponseAsync(client, response).ConfigureAwait(false); }
        catch (Exception e) when (e is SocketException or IOException or ObjectDisposedException) { }
    }

    public static HttpResponse Error(int status, string message) =>
        new(status, System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(new ApiError(message), HyperdJson.Default.ApiError));

    /// <summary>Reads the request line, headers (≤ 16 KiB) and a Content-Length body (≤ 1 MiB); null when malformed.</summary>
    internal static async Task<HttpRequest?> ReadRequestAsync(Socket client, CancellationToken cancellationToken)
    {
        var buffer = new byte[MaxHeaderBytes];
        int filled = 0, headerEnd = -1;
        while (headerEnd < 0)
        {
            if (filled == buffer.Length) return null;
            int n = await client.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None, cancellationToken).ConfigureAwait(false);
            if (n == 0) return null;
            filled += n;
            headerEnd = buffer.AsSpan(0, filled).IndexOf("\r\n\r\n"u8);
        }
        var head = Encoding.ASCII.GetString(buffer, 0, headerEnd);
        var lines = head.Split("\r\n");
        var requestLine = lines[0].Split(' ');
        if (requestLine.Length != 3 || !requestLine[2].StartsWith("HTTP/1.", StringComparison.Ordinal) || !requestLine[1].StartsWith('/'))
            return null;
        long length = 0;
        foreach (var line in lines.AsSpan(1))
        {
            int colon = line.IndexOf(':');
            if (colon <= 0) return null;
            var name = line[..colon].Trim();
            var value = line[(colon + 1)..].Trim();
            if (name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase))
            {
                if (!long.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out length)
                    || length > MaxBodyBytes) return null;
            }
            else if (name.Equals("Transfer-Encoding", StringComparison.OrdinalIgnoreCase)) return null; // chunked bodies are not accepted
        }
        var body = new byte[length];
        int already = Math.Min(filled - (headerEnd + 4), (int)length);
        buffer.AsSpan(headerEnd + 4, already).CopyTo(body);
        int got = already;
        while (got < length)
        {
            int n = await client.ReceiveAsync(body.AsMemory(got), SocketFlags.None, cancellationToken).ConfigureAwait(false);
            if (n == 0) return null;
            got += n;
        }
        var target = requestLine[1];
        int q = target.IndexOf('?');
        var path = Uri.UnescapeDataString(q < 0 ? target : target[..q]);
        return new HttpRequest(requestLine[0], path, q < 0 ? "" : target[(q + 1)..], body);
    }

    private static async Task WriteResponseAsync(Socket client, HttpResponse response)
    {
        var head = $"HTTP/1.1 {response.Status} {Reason(response.Status)}\r\nContent-Type: application/json\r\n" +
                   $"Content-Length: {response.Body.Length}\r\nConnection: close\r\n\r\n";
        await client.SendAsync(Encoding.ASCII.GetBytes(head), SocketFlags.None).ConfigureAwait(false);
        if (response.Body.Length > 0) await client.SendAsync(response.Body, SocketFlags.None).ConfigureAwait(false);
        client.Shutdown(SocketShutdown.Send);
    }

    private static string Reason(int status) => status switch
    {
        200 => "OK", 201 => "Created", 204 => "No Content", 400 => "Bad Request", 404 => "Not Found", 405 => "Method Not Allowed",
        409 => "Conflict", 500 => "Internal Server Error", 504 => "Gateway Timeout", 507 => "Insufficient Storage", _ => "Status",
    };

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Dispose();
        await _accept.ConfigureAwait(false);
        File.Delete(SocketPath);
    }
}
