using System.Net.Sockets;
using System.Text;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Domains.Hyperd;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;
using XenIo.Hypervisor.Store.Transports;
using XenIo.Hypervisor.Daemons;
using Xunit;

namespace XenIo.Hypervisor.Tests.Hyperd;

/// <summary>hyperd's control API over its Unix socket, with a toolstack that starts no agents (no root needed).</summary>
public sealed class HyperdApiTests : IAsyncDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "xenio-api-" + Guid.NewGuid().ToString("N")[..10]);
    private readonly CoreHost _host;
    private readonly XenstoreSocketListener _listener;
    private XenstoreClient? _dom0;
    private DomainManager? _manager;
    private UnixHttpServer? _server;

    public HyperdApiTests()
    {
        _host = new CoreHost(_dir, budgetPages: 4096);
        _listener = new XenstoreSocketListener(new Xenstored(mapper: new XenstoreDomainMapper(_host)), XenstoreSocketListener.PathUnder(_dir));
    }

    private async Task<HyperdClient> StartAsync()
    {
        _dom0 = await XenstoreClient.ConnectAsync(_listener.SocketPath);
        _manager = new DomainManager(_host, _dom0, spawner: null);
        _server = new UnixHttpServer(HyperdClient.SocketUnder(_dir), new HyperdApi(_manager).ServeAsync);
        return new HyperdClient(_server.SocketPath);
    }

    private async Task<string> RawAsync(string request)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(_server!.SocketPath));
        await socket.SendAsync(Encoding.ASCII.GetBytes(request), SocketFlags.None);
        socket.Shutdown(SocketShutdown.Send);
        var answer = new MemoryStream();
        var buffer = new byte[4096];
        int n;
        while ((n = await socket.ReceiveAsync(buffer, SocketFlags.None)) > 0) answer.Write(buffer, 0, n);
        return Encoding.UTF8.GetString(answer.ToArray());
    }

    [Fact]
    public async Task Domains_are_created_listed_set_and_destroyed_through_the_socket()
    {
        using var client = await StartAsync();
        var created = await client.CreateAsync(new DomainConfig { Name = "web", MemoryMiB = 4, MaxMemMiB = 8, Vcpus = 2 });
        Assert.Equal(("web", 1, 4L, DomainState.Running), (created.Name, created.Domid, created.MemoryMiB, created.State));
        Assert.Equal(8 * 256, _host.Pool.UsedPages);

        await client.MemSetAsync("web", 6);
        Assert.Equal("6144", await _dom0!.ReadAsync("/local/domain/1/memory/target"));
        await client.ActAsync("1", "reboot");
        Assert.Equal("reboot", await _dom0.ReadAsync("/local/domain/1/control/shutdown"));
        var listed = Assert.Single(await client.ListAsync());
        Assert.Equal((6L, 2), (listed.MemoryMiB, listed.Vcpus));

        // Refusals come back as their status and message.
        var dup = await Assert.ThrowsAsync<DomainException>(() => client.CreateAsync(new DomainConfig { Name = "web", MemoryMiB = 4 }));
        Assert.Equal((409, "a domain named 'web' exists already"), (dup.Status, dup.Message));
        var full = await Assert.ThrowsAsync<DomainException>(() => client.CreateAsync(new DomainConfig { Name = "big", MemoryMiB = 64 }));
        Assert.Equal(507, full.Status);
        var tooBig = await Assert.ThrowsAsync<DomainException>(() => client.MemSetAsync("web", 9));
        Assert.Equal(400, tooBig.Status);
        var noAgent = await Assert.ThrowsAsync<DomainException>(() => client.ActAsync("web", "pause"));
        Assert.Equal(409, noAgent.Status);
        var unknown = await Assert.ThrowsAsync<DomainException>(() => client.DestroyAsync("nope"));
        Assert.Equal((404, "no domain 'nope'"), (unknown.Status, unknown.Message));

        await client.DestroyAsync("web");
        Assert.Empty(await client.ListAsync());
        Assert.Equal(0, _host.Pool.UsedPages);
    }

    [Fact]
    public async Task Malformed_or_unknown_requests_get_an_error_and_the_server_keeps_serving()
    {
        using var client = await StartAsync();
        Assert.StartsWith("HTTP/1.1 400 ", await RawAsync("GARBAGE\r\n\r\n"));
        Assert.StartsWith("HTTP/1.1 400 ", await RawAsync("POST /domains HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"));
        Assert.StartsWith("HTTP/1.1 400 ", await RawAsync("POST /domains HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"));
        Assert.StartsWith("HTTP/1.1 400 ", await RawAsync("POST /domains HTTP/1.1\r\nContent-Length: 5\r\n\r\n{nope"));
        const string evil = "{\"name\": \"../../etc\"}";
        var refused = await RawAsync($"POST /domains HTTP/1.1\r\nContent-Length: {evil.Length}\r\n\r\n{evil}");
        Assert.StartsWith("HTTP/1.1 400 ", refused);
        Assert.Contains("not a valid domain name", refused);
        Assert.StartsWith("HTTP/1.1 404 ", await RawAsync("GET /secrets HTTP/1.1\r\n\r\n"));
        Assert.StartsWith("HTTP/1.1 405 ", await RawAsync("PUT /domains HTTP/1.1\r\n\r\n"));
        // An oversized head is answered 400 and the connection closed with the rest unread, which a Unix
        // socket may report to the sender as a reset instead.
        try { Assert.StartsWith("HTTP/1.1 400 ", await RawAsync("GET /" + new string('a', UnixHttpServer.MaxHeaderBytes) + " HTTP/1.1\r\n\r\n")); }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset) { }
        var ok = await RawAsync("GET /domains HTTP/1.1\r\nHost: hyperd\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 200 ", ok);
        Assert.EndsWith("\r\n\r\n[]", ok);
        Assert.Empty(await client.ListAsync());
    }

    public async ValueTask DisposeAsync()
    {
        if (_server is not null) await _server.DisposeAsync();
        if (_manager is not null) await _manager.DisposeAsync();
        if (_dom0 is not null) await _dom0.DisposeAsync();
        await _listener.DisposeAsync();
        _host.Dispose();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
