using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace XenIo.Hypervisor.Domains.Hyperd;

/// <summary>An error answer: <c>{"error": "..."}</c>.</summary>
public sealed record ApiError(string Error);

/// <summary><c>POST /domains/{id}/mem-set</c>'s body.</summary>
public sealed record MemSetRequest(long MemoryMib);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ApiError))]
[JsonSerializable(typeof(MemSetRequest))]
[JsonSerializable(typeof(DomainInfo))]
[JsonSerializable(typeof(List<DomainInfo>))]
public sealed partial class HyperdJson : JsonSerializerContext;

/// <summary>
/// hyperd's control API over <see cref="UnixHttpServer"/>:
/// <c>GET /domains</c>, <c>POST /domains</c> (a <see cref="DomainConfig"/>), <c>DELETE /domains/{name|id}</c>,
/// <c>POST /domains/{name|id}/shutdown|reboot[?wait=SECONDS]</c>, <c>…/pause</c>, <c>…/unpause</c>,
/// <c>…/mem-set</c> (<c>{"memory_mib": N}</c>). Errors are <c>{"error": …}</c> with 400, 404, 409, 504 or 507.
/// </summary>
public sealed class HyperdApi(DomainManager manager)
{
    public async Task<HttpResponse> HandleAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        var parts = request.Path.Split('/', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0 || parts[0] != "domains") return UnixHttpServer.Error(404, $"no resource {request.Path}");
        try
        {
            switch (request.Method, parts.Length)
            {
                case ("GET", 1):
                    return Json(200, manager.List().ToList(), HyperdJson.Default.ListDomainInfo);
                case ("POST", 1):
                {
                    DomainConfig? config;
                    try { config = JsonSerializer.Deserialize(request.Body, DomainConfigJson.Default.DomainConfig); }
                    catch (JsonException e) { return UnixHttpServer.Error(400, $"bad domain configuration: {e.Message}"); }
                    if (config is null) return UnixHttpServer.Error(400, "empty domain configuration");
                    var domain = await manager.CreateAsync(config, cancellationToken).ConfigureAwait(false);
                    return Json(201, domain.Info(), HyperdJson.Default.DomainInfo);
                }
                case ("GET", 2):
                    return Json(200, (manager.Find(parts[1]) ?? throw DomainException.NotFound(parts[1])).Info(), HyperdJson.Default.DomainInfo);
                case ("DELETE", 2):
                    await manager.DestroyAsync(parts[1]).ConfigureAwait(false);
                    return HttpResponse.Empty();
                case ("POST", 3):
                    return await ActAsync(parts[1], parts[2], request, cancellationToken).ConfigureAwait(false);
                default:
                    return UnixHttpServer.Error(405, $"{request.Method} {request.Path} is not supported");
            }
        }
        catch (DomainException e)
        {
            return UnixHttpServer.Error(e.Status, e.Message);
        }
    }

    private async Task<HttpResponse> ActAsync(string id, string action, HttpRequest request, CancellationToken cancellationToken)
    {
        switch (action)
        {
            case "shutdown" or "reboot":
                TimeSpan? wait = null;
                foreach (var pair in request.Query.Split('&', StringSplitOptions.RemoveEmptyEntries))
                    if (pair.StartsWith("wait=", StringComparison.Ordinal)
                        && int.TryParse(pair.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) && seconds is > 0 and <= 3600)
                        wait = TimeSpan.FromSeconds(seconds);
                await manager.ShutdownAsync(id, action == "reboot", wait, cancellationToken).ConfigureAwait(false);
                return HttpResponse.Empty();
            case "pause" or "unpause":
                manager.Pause(id, action == "pause");
                return HttpResponse.Empty();
            case "mem-set":
                MemSetRequest? body;
                try { body = JsonSerializer.Deserialize(request.Body, HyperdJson.Default.MemSetRequest); }
                catch (JsonException e) { return UnixHttpServer.Error(400, $"bad mem-set request: {e.Message}"); }
                if (body is null) return UnixHttpServer.Error(400, "empty mem-set request");
                await manager.MemSetAsync(id, body.MemoryMib, cancellationToken).ConfigureAwait(false);
                return HttpResponse.Empty();
            default:
                return UnixHttpServer.Error(404, $"no action '{action}'");
        }
    }

    private static HttpResponse Json<T>(int status, T value, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> info) =>
        new(status, JsonSerializer.SerializeToUtf8Bytes(value, info));
}
