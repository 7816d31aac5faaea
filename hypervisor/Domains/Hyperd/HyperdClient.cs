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
