using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using XenIo.Hypervisor.Daemons;
using XenIo.Net.Tap;
using XenIo.Netback.Api;
using XenIo.VSwitch.Management;
using Xunit;

namespace XenIo.Integration.Tests.SwitchManagement;

/// <summary>netback's HTTP server and API in-process: routes, errors, hostile requests, the streamed capture.</summary>
public sealed class NetbackApiTests : IAsyncDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("xenio-api-").FullName;
    private readonly EpollLoop _loop = new("api-test");
    private readonly SwitchReconciler _reconciler;
    private readonly UnixHttpServer _server;
    private readonly List<string> _log = [];

    public NetbackApiTests()
    {
        _reconciler = new SwitchReconciler(new PortFactory(_loop));
        var port = new PortConfig("s1", "stream") { Options = new SortedDictionary<string, string> { ["listen"] = $"unix:{_dir}/s1.sock" } };
        Assert.Empty(_reconciler.Apply(new SwitchConfig(new Dictionary<string, BridgeConfig> { ["br0"] = new("br0") { Ports = new Dictionary<string, PortConfig> { ["s1"] = port } } })));
        var api = new NetbackApi(_reconciler, () => ["a config error"], m => { lock (_log) _log.Add(m); });
        _server = new UnixHttpServer(Path.Combine(_dir, "netback.sock"), api.HandleAsync, m => { lock (_log) _log.Add(m); });
    }

    public async ValueTask DisposeAsync()
    {
        await _server.DisposeAsync();
        _reconciler.Dispose();
        _loop.Dispose();
        Directory.Delete(_dir, true);
    }

    private async Task<Socket> Connect()
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await s.ConnectAsync(new UnixDomainSocketEndPoint(_server.SocketPath));
        return s;
    }

    private async Task<(int Status, string Head, string Body)> Raw(byte[] request)
    {
        using var s = await Connect();
        await s.SendAsync(request);
        s.Shutdown(SocketShutdown.Send);
        var all = new MemoryStream();
        var buffer = new byte[8192];
        int n;
        while ((n = await s.ReceiveAsync(buffer)) > 0) all.Write(buffer, 0, n);
        var text = Encoding.UTF8.GetString(all.ToArray());
        var split = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        Assert.True(split > 0, $"no HTTP head in '{text}'");
        return (int.Parse(text.Split(' ')[1]), text[..split], text[(split + 4)..]);
    }

    private Task<(int Status, string Head, string Body)> Get(string target) => Raw(Encoding.ASCII.GetBytes($"GET {target} HTTP/1.1\r\nHost: netback\r\n\r\n"));

    [Fact]
    public async Task RoutesAnswerJson()
    {
        if (!OperatingSystem.IsWindows())
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(_server.SocketPath));
        var (status, head, body) = await Get("/bridges");
        Assert.Equal(200, status);
        Assert.Contains("Content-Type: application/json", head);
        using (var doc = JsonDocument.Parse(body))
        {
            var br0 = doc.RootElement.GetProperty("bridges")[0];
            Assert.Equal("br0", br0.GetProperty("name").GetString());
            Assert.Equal("s1", br0.GetProperty("ports")[0].GetProperty("name").GetString());
            Assert.Equal("stream", br0.GetProperty("ports")[0].GetProperty("kind").GetString());
        }
        using (var doc = JsonDocument.Parse((await Get("/bridges/br0")).Body))
            Assert.True(doc.RootElement.GetProperty("ports")[0].TryGetProperty("drops_by_reason", out _));
        using (var doc = JsonDocument.Parse((await Get("/stats")).Body))
            Assert.Equal(1, doc.RootElement.GetProperty("bridges").GetArrayLength());
        using (var doc = JsonDocument.Parse((await Get("/bridges/br0/fdb")).Body))
            Assert.Equal(0, doc.RootElement.GetProperty("entries").GetArrayLength());
        var flush = await Raw("POST /bridges/br0/fdb/flush HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"u8.ToArray());
        Assert.Equal(200, flush.Status);
        Assert.Contains("\"flushed\": 0", flush.Body);
        Assert.Contains("a config error", (await Get("/errors")).Body);
    }

    [Fact]
    public async Task TheFdbListsMacsLearnedBehindVxlanRemotes()
    {
        using var remote = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        remote.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        var vxlan = new PortConfig("v1", "vxlan")
        {
            Options = new SortedDictionary<string, string> { ["local"] = "127.0.0.1:0", ["vni"] = "42", ["remotes"] = remote.LocalEndPoint!.ToString()! },
        };
        var config = new SwitchConfig(new Dictionary<string, BridgeConfig> { ["br1"] = new("br1") { Ports = new Dictionary<string, PortConfig> { ["v1"] = vxlan } } });
        Assert.Empty(_reconciler.Apply(config));
        var port = Assert.IsType<XenIo.VSwitch.Ports.VxlanPort>(_reconciler.FindBridge("br1")!.FindPort("v1"));
        var packet = new byte[8 + 60];
        XenIo.VSwitch.Ports.VxlanHeader.Write(packet, 42);
        packet.AsSpan(8, 6).Fill(0xFF);
        byte[] source = [0x02, 0, 0, 0, 0, 0x42];
        source.CopyTo(packet, 8 + 6);
        remote.SendTo(packet, port.LocalEndPoint);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (port.Learned.Count == 0 && DateTime.UtcNow < deadline) await Task.Delay(10);

        using var doc = JsonDocument.Parse((await Get("/bridges/br1/fdb")).Body);
        var entry = Assert.Single(doc.RootElement.GetProperty("tunnel_entries").EnumerateArray());
        Assert.Equal("v1", entry.GetProperty("port").GetString());
        Assert.Equal("02:00:00:00:00:42", entry.GetProperty("mac").GetString());
        Assert.Equal(remote.LocalEndPoint.ToString(), entry.GetProperty("remote").GetString());
        Assert.Equal(42, entry.GetProperty("vni").GetInt32());
    }

    [Theory]
    [InlineData("/bridges/nope", 404, "no bridge nope")]
    [InlineData("/bridges/nope/fdb", 404, "no bridge nope")]
    [InlineData("/nothing", 404, "no endpoint GET /nothing")]
    [InlineData("/capture?bridge=nope", 404, "no bridge nope")]
    [InlineData("/capture", 404, "no bridge (none given)")]
    [InlineData("/capture?bridge=br0&port=zz", 404, "bridge br0 has no port zz")]
    [InlineData("/capture?bridge=br0&snaplen=0", 400, "snaplen '0' is invalid")]
    [InlineData("/capture?bridge=br0&format=erf", 400, "format 'erf' is invalid")]
    [InlineData("/capture?bridge=br0&filter=not%20a%20(filter", 400, "filter")]
    public async Task ErrorsSayWhatIsWrong(string target, int status, string message)
    {
        var reply = await Get(target);
        Assert.Equal(status, reply.Status);
        using var doc = JsonDocument.Parse(reply.Body);
        Assert.Contains(message, doc.RootElement.GetProperty("error").GetString());
    }

    public static TheoryData<string> Hostile => new()
    {
        "GARBAGE\r\n\r\n",
        "GET nopath HTTP/1.1\r\n\r\n",
        "GET / FTP/1.0\r\n\r\n",
        "GET /bridges HTTP/1.1\r\nno-colon-here\r\n\r\n",
        "POST /bridges/br0/fdb/flush HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
        "POST /bridges/br0/fdb/flush HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        "POST /bridges/br0/fdb/flush HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "GET /bridges HTTP/1.1\r\nX: " + new string('a', 20_000) + "\r\n\r\n",
    };

    [Theory]
    [MemberData(nameof(Hostile))]
    public async Task MalformedRequestsGet400AndTheServerCarriesOn(string request)
    {
        Assert.Equal(400, (await Raw(Encoding.ASCII.GetBytes(request))).Status);
        Assert.Equal(200, (await Get("/bridges")).Status);
    }

    private static bool HasFirstChunk(byte[] bytes)
    {
        var head = bytes.AsSpan().IndexOf("\r\n\r\n"u8);
        if (head < 0) return false;
        var body = bytes.AsSpan(head + 4);
        var crlf = body.IndexOf("\r\n"u8);
        return crlf > 0 && body.Length >= crlf + 2 + 4;
    }

    [Fact]
    public async Task CaptureStreamsChunkedUntilTheClientLeaves()
    {
        using (var s = await Connect())
        {
            await s.SendAsync("GET /capture?bridge=br0&format=pcapng&filter=icmp HTTP/1.1\r\n\r\n"u8.ToArray());
            var received = new MemoryStream();
            var buffer = new byte[4096];
            // The head, then a first chunk holding the pcapng section header block (0x0A0D0D0A).
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            while (!HasFirstChunk(received.ToArray()))
            {
                var n = await s.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
                Assert.True(n > 0, "the capture stream ended early");
                received.Write(buffer, 0, n);
            }
            var bytes = received.ToArray();
            var text = Encoding.ASCII.GetString(bytes);
            Assert.StartsWith("HTTP/1.1 200", text);
            Assert.Contains("Transfer-Encoding: chunked", text);
            Assert.Contains("application/x-pcapng", text);
            var body = bytes.AsSpan(text.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4);
            var crlf = body.IndexOf("\r\n"u8);
            Assert.True(crlf > 0);
            Assert.Equal(0x0A0D0D0Au, BitConverter.ToUInt32(body[(crlf + 2)..]));
        }
        // Closing the connection ends the capture and detaches its mirror.
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            lock (_log)
                if (_log.Any(l => l.Contains("capture on br0 ended"))) break;
            Assert.True(DateTime.UtcNow < deadline, "the capture did not end when the client left");
            await Task.Delay(20);
        }
    }
}
