using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text.Json;

namespace XenIo.Hypervisor.Domains.Hyperd;

/// <summary>The control API's client (the <c>xenio</c> verbs, tests): HttpClient over <c>&lt;run&gt;/hyperd.sock</c>.</summary>
public sealed class HyperdClient : IDisposable
{
    private readonly HttpClient _http;

    public HyperdClient(string socketPath)
    {
        SocketPath = socketPath;
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, cancellationToken) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancellationToken).ConfigureAwait(false);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
        };
        _http = new HttpClient(handler) { BaseAddress = new Uri("http://hyperd/"), Timeout = TimeSpan.FromMinutes(5) };
    }

    public string SocketPath { get; }

    public static string SocketUnder(string runDirectory) => Path.Combine(runDirectory, "hyperd.sock");

    public async Task<DomainInfo> CreateAsync(DomainConfig config, CancellationToken cancellationToken = default)
    {
        var body = new ByteArrayContent(JsonSerializer.SerializeToUtf8Bytes(config, DomainConfigJson.Default.DomainConfig));
        body.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        using var response = await SendAsync(HttpMethod.Post, "domains", body, cancellationToken).ConfigureAwait(false);
        return await ReadAsync(response, HyperdJson.Default.DomainInfo, cancellationToken).ConfigureAwait(false);
    }

    public async Task<List<DomainInfo>> ListAsync(CancellationToken cancellationToken = default)
    {
        using var response = await SendAsync(HttpMethod.Get, "domains", null, cancellationToken).ConfigureAwait(false);
        return await ReadAsync(response, HyperdJson.Default.ListDomainInfo, cancellationToken).ConfigureAwait(false);
    }

    public async Task DestroyAsync(string domain, CancellationToken cancellationToken = default) =>
        (await SendAsync(HttpMethod.Delete, $"domains/{Uri.EscapeDataString(domain)}", null, cancellationToken).ConfigureAwait(false)).Dispose();

    /// <summary>shutdown, reboot, pause or unpause; <paramref name="waitSeconds"/> makes shutdown/reboot return once the domain has gone.</summary>
    public async Task ActAsync(string domain, string action, int? waitSeconds = null, CancellationToken cancellationToken = default) =>
        (await SendAsync(HttpMethod.Post, $"domains/{Uri.EscapeDataString(domain)}/{action}" + (waitSeconds is { } w ? $"?wait={w}" : ""),
            null, cancellationToken).ConfigureAwait(false)).Dispose();

    public async Task MemSetAsync(string domain, long mib, CancellationToken cancellationToken = default)
    {
        var body = new ByteArrayContent(JsonSerializer.SerializeToUtf8Bytes(new MemSetRequest(mib), HyperdJson.Default.MemSetRequest));
        body.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        (await SendAsync(HttpMethod.Post, $"domains/{Uri.EscapeDataString(domain)}/mem-set", body, cancellationToken).ConfigureAwait(false)).Dispose();
    }

    public async Task<HostInfo> InfoAsync(CancellationToken cancellationToken = default)
    {
        using var response = await SendAsync(HttpMethod.Get, "info", null, cancellationToken).ConfigureAwait(false);
        return await ReadAsync(response, HyperdJson.Default.HostInfo, cancellationToken).ConfigureAwait(false);
    }

    public Task SysrqAsync(string domain, string key, CancellationToken cancellationToken = default) =>
        PostAsync($"domains/{Uri.EscapeDataString(domain)}/sysrq", Body(new SysrqRequest(key), HyperdJson.Default.SysrqRequest), cancellationToken);

    public Task RenameAsync(string domain, string newName, CancellationToken cancellationToken = default) =>
        PostAsync($"domains/{Uri.EscapeDataString(domain)}/rename", Body(new RenameRequest(newName), HyperdJson.Default.RenameRequest), cancellationToken);

    public async Task<DeviceInfo> AttachVifAsync(string domain, VifConfig vif, CancellationToken cancellationToken = default)
    {
        using var response = await SendAsync(HttpMethod.Post, $"domains/{Uri.EscapeDataString(domain)}/devices/vif",
            Body(vif, HyperdJson.Default.VifConfig), cancellationToken).ConfigureAwait(false);
        return await ReadAsync(response, HyperdJson.Default.DeviceInfo, cancellationToken).ConfigureAwait(false);
    }

    public async Task<DeviceInfo> AttachDiskAsync(string domain, DiskConfig disk, CancellationToken cancellationToken = default)
    {
        using var response = await SendAsync(HttpMethod.Post, $"domains/{Uri.EscapeDataString(domain)}/devices/vbd",
            Body(disk, HyperdJson.Default.DiskConfig), cancellationToken).ConfigureAwait(false);
        return await ReadAsync(response, HyperdJson.Default.DeviceInfo, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Detaches a vif (devid or MAC) or vbd (devid or vdev); true when the nodes were removed without the backend closing.</summary>
    public async Task<bool> DetachAsync(string domain, string kind, string device, bool force = false, int? timeoutSeconds = null,
        CancellationToken cancellationToken = default)
    {
        var query = new List<string>();
        if (force) query.Add("force=1");
        if (timeoutSeconds is { } t) query.Add($"timeout={t}");
        using var response = await SendAsync(HttpMethod.Delete,
            $"domains/{Uri.EscapeDataString(domain)}/devices/{kind}/{Uri.EscapeDataString(device)}" + (query.Count > 0 ? "?" + string.Join('&', query) : ""),
            null, cancellationToken).ConfigureAwait(false);
        return (await ReadAsync(response, HyperdJson.Default.DetachResult, cancellationToken).ConfigureAwait(false)).Forced;
    }

    public async Task<List<DeviceInfo>> ListDevicesAsync(string domain, string kind, CancellationToken cancellationToken = default)
    {
        using var response = await SendAsync(HttpMethod.Get, $"domains/{Uri.EscapeDataString(domain)}/devices/{kind}", null, cancellationToken).ConfigureAwait(false);
        return await ReadAsync(response, HyperdJson.Default.ListDeviceInfo, cancellationToken).ConfigureAwait(false);
    }

    private async Task PostAsync(string path, HttpContent body, CancellationToken cancellationToken) =>
        (await SendAsync(HttpMethod.Post, path, body, cancellationToken).ConfigureAwait(false)).Dispose();

    private static ByteArrayContent Body<T>(T value, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> info)
    {
        var body = new ByteArrayContent(JsonSerializer.SerializeToUtf8Bytes(value, info));
        body.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        return body;
    }

    private async Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, HttpContent? content, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(method, path) { Content = content };
        HttpResponseMessage response;
        try { response = await _http.SendAsync(request, cancellationToken).ConfigureAwait(false); }
        catch (HttpRequestException e) when (e.InnerException is SocketException)
        {
            throw new DomainException(503, $"cannot reach hyperd at {SocketPath}: {e.InnerException.Message} (is `xenio hyperd` running with this --run-dir?)");
        }
        if (response.IsSuccessStatusCode) return response;
        using (response)
        {
            var bytes = await response.Content.ReadAsByteArrayAsync(cancellationToken).ConfigureAwait(false);
            string message;
            try { message = JsonSerializer.Deserialize(bytes, HyperdJson.Default.ApiError)?.Error ?? response.ReasonPhrase ?? "error"; }
            catch (JsonException) { message = $"{(int)response.StatusCode} {response.ReasonPhrase}"; }
            throw new DomainException((int)response.StatusCode, message);
        }
    }

    private static async Task<T> ReadAsync<T>(HttpResponseMessage response, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> info,
        CancellationToken cancellationToken)
    {
        var bytes = await response.Content.ReadAsByteArrayAsync(cancellationToken).ConfigureAwait(false);
        return JsonSerializer.Deserialize(bytes, info) ?? throw new InvalidDataException("hyperd sent an empty answer");
    }

    public void Dispose() => _http.Dispose();
}
