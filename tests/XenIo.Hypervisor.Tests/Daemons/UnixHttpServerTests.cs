using System.Net.Sockets;
using System.Text;
using XenIo.Hypervisor.Daemons;
using Xunit;

namespace XenIo.Hypervisor.Tests.Daemons;

/// <summary>
/// The daemons' HTTP server, spoken to over a raw socket: what a handler sees of a request, the answers
/// to malformed requests and failing handlers, and the deadline that ends a client which never
/// finishes its request while others are served.
/// </summary>
public sealed class UnixHttpServerTests : IAsyncDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "xenio-http-" + Guid.NewGuid().ToString("N")[..10]);
    private readonly List<string> _log = [];
    private readonly UnixHttpServer _server;
    private HttpRequest? _seen;

    public UnixHttpServerTests()
    {
        _server = new UnixHttpServer(Path.Combine(_dir, "api.sock"), HandleAsync, m => { lock (_log) _log.Add(m); }, requestTimeout: TimeSpan.FromMilliseconds(300));
    }

    private async Task HandleAsync(HttpRequest request, HttpResponse response, CancellationToken cancellationToken)
    {
        _seen = request;
        if (request.Path == "/fail") throw new InvalidOperationException("the handler broke");
        await response.WriteTextAsync(200, $"{request.Method} {request.Path} {string.Join('|', request.Segments)} {request.Body.Length}\n");
    }

    public async ValueTask DisposeAsync()
    {
        await _server.DisposeAsync();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public async Task Handler_sees_the_decoded_query_headers_and_body()
    {
        var answer = await RawAsync("POST /domains/a%20b%2Fc/devices?force=1&timeout=5&name=x%2By HTTP/1.1\r\nHost: localhost\r\nX-Token: abc\r\nContent-Length: 3\r\n\r\nxyz");
        Assert.StartsWith("HTTP/1.1 200 OK\r\n", answer);
        Assert.EndsWith("POST /domains/a%20b%2Fc/devices domains|a b/c|devices 3\n", answer);
        Assert.NotNull(_seen);
        Assert.Equal("1", _seen!.Query["force"]);
        Assert.Equal("5", _seen.Query["timeout"]);
        Assert.Equal("x+y", _seen.Query["name"]);
        Assert.Equal("abc", _seen.Headers["x-token"]);
        Assert.Equal("xyz"u8.ToArray(), _seen.Body);
    }

    [Theory]
    [InlineData("GARBAGE\r\n\r\n")]
    [InlineData("GET relative HTTP/1.1\r\n\r\n")]
    [InlineData("GET / HTTP/1.1\r\nno colon here\r\n\r\n")]
    [InlineData("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n")]
    [InlineData("POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n")]
    [InlineData("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")]
    public async Task Malformed_requests_get_400_and_reach_no_handler(string request)
    {
        Assert.StartsWith("HTTP/1.1 400 ", await RawAsync(request));
        Assert.Null(_seen);
    }

    [Fact]
    public async Task Oversized_head_gets_400()
    {
        Assert.StartsWith("HTTP/1.1 400 ", await RawAsync("GET /" + new string('a', UnixHttpServer.MaxHeaderBytes) + " HTTP/1.1\r\n\r\n"));
    }

    [Fact]
    public async Task A_failing_handler_answers_500_and_is_logged_once()
    {
        var answer = await RawAsync("GET /fail HTTP/1.1\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 500 ", answer);
        Assert.Contains("the handler broke", answer);
        lock (_log) Assert.Single(_log, l => l.Contains("GET /fail failed") && l.Contains("the handler broke"));
    }

    [Fact]
    public async Task A_client_that_never_finishes_its_request_is_closed_while_others_are_served()
    {
        using var stuck = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await stuck.ConnectAsync(new UnixDomainSocketEndPoint(_server.SocketPath));
        await stuck.SendAsync("GET / HTTP/1.1\r\nHost: loc"u8.ToArray(), SocketFlags.None);

        Assert.StartsWith("HTTP/1.1 200 ", await RawAsync("GET /other HTTP/1.1\r\n\r\n"));

        // Past the deadline the server closes the stuck connection without an answer.
        using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var n = await stuck.ReceiveAsync(new byte[64], SocketFlags.None, wait.Token);
        Assert.Equal(0, n);
    }

    private async Task<string> RawAsync(string request)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(_server.SocketPath));
        await socket.SendAsync(Encoding.ASCII.GetBytes(request), SocketFlags.None);
        var answer = new MemoryStream();
        var buffer = new byte[4096];
        using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        int n;
        while ((n = await socket.ReceiveAsync(buffer, SocketFlags.None, wait.Token)) > 0) answer.Write(buffer, 0, n);
        return Encoding.ASCII.GetString(answer.ToArray());
    }
}
