using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace XenIo.Hypervisor.Domains.Hyperd;

/// <summary>An error answer: <c>{"error": "..."}</c>.</summary>
public sealed record ApiError(string Error);

/// <summary><c>POST /domains/{id}/mem-set</c>'s body.</summary>
public sealed record MemSetRequest(long MemoryMib);

/// <summary><c>POST /domains/{id}/sysrq</c>'s body.</summary>
public sealed record SysrqRequest(string Key);

/// <summary><c>POST /domains/{id}/rename</c>'s body.</summary>
public sealed record RenameRequest(string Name);

/// <summary><c>DELETE /domains/{id}/devices/{kind}/{dev}</c>'s answer.</summary>
public sealed record DetachResult(bool Forced);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ApiError))]
[JsonSerializable(typeof(MemSetRequest))]
[JsonSerializable(typeof(DomainInfo))]
[JsonSerializable(typeof(List<DomainInfo>))]
[JsonSerializable(typeof(SysrqRequest))]
[JsonSerializable(typeof(RenameRequest))]
[JsonSerializable(typeof(DetachResult))]
[JsonSerializable(typeof(HostInfo))]
[JsonSerializable(typeof(DeviceInfo))]
[JsonSerializable(typeof(List<DeviceInfo>))]
[JsonSerializable(typeof(VifConfig))]
[JsonSerializable(typeof(DiskConfig))]
public sealed partial class HyperdJson : JsonSerializerContext;

/// <summary>
/// hyperd's control API over <see cref="UnixHttpServer"/>:
/// <c>GET /domains</c>, <c>POST /domains</c> (a <see cref="DomainConfig"/>), <c>DELETE /domains/{name|id}</c>,
/// <c>POST /domains/{name|id}/shutdown|reboot[?wait=SECONDS]</c>, <c>…/pause</c>, <c>…/unpause</c>,
/// <c>…/mem-set</c> (<c>{"memory_mib": N}</c>), <c>…/sysrq</c> (<c>{"key": "b"}</c>), <c>…/rename</c> (<c>{"name": …}</c>),
/// <c>GET|POST /domains/{id}/devices/vif|vbd</c> (a <see cref="VifConfig"/> or <see cref="DiskConfig"/>),
/// <c>DELETE /domains/{id}/devices/vif|vbd/{devid|mac|vdev}[?force=1&amp;timeout=SECONDS]</c>, <c>GET /info</c>. Errors are <c>{"error": …}</c> with 400, 404, 409, 504 or 507.
/// </summary>
public sealed class HyperdApi(DomainManager manager)
{
    public async Task<HttpResponse> HandleAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        var parts = request.Path.Split('/', StringSplitOptions.RemoveEmptyEntries).Select(Uri.UnescapeDataString).ToArray();
        if (parts is ["info"] && request.Method == "GET") return Json(200, manager.Info(), HyperdJson.Default.HostInfo);
        if (parts.Length == 0 || parts[0] != "domains") return UnixHttpServer.Error(404, $"no resource {request.Path}");
        try
        {
            if (parts.Length >= 4 && parts[2] == "devices") return await DevicesAsync(parts, request, cancellationToken).ConfigureAwait(false);
            switch (request.Method, parts.Length)
            {
                case ("GET", 1):
                    return Json(200, await manager.ListAsync(cancellationToken).ConfigureAwait(false), HyperdJson.Default.ListDomainInfo);
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
            case "sysrq":
            {
                SysrqRequest? sysrq;
                try { sysrq = JsonSerializer.Deserialize(request.Body, HyperdJson.Default.SysrqRequest); }
                catch (JsonException e) { return UnixHttpServer.Error(400, $"bad sysrq request: {e.Message}"); }
                if (sysrq?.Key is null) return UnixHttpServer.Error(400, "empty sysrq request");
                await manager.SysrqAsync(id, sysrq.Key, cancellationToken).ConfigureAwait(false);
                return HttpResponse.Empty();
            }
            case "rename":
            {
                RenameRequest? rename;
                try { rename = JsonSerializer.Deserialize(request.Body, HyperdJson.Default.RenameRequest); }
                catch (JsonException e) { return UnixHttpServer.Error(400, $"bad rename request: {e.Message}"); }
                if (rename?.Name is null) return UnixHttpServer.Error(400, "empty rename request");
                await manager.RenameAsync(id, rename.Name, cancellationToken).ConfigureAwait(false);
                return HttpResponse.Empty();
            }
            default:
                return UnixHttpServer.Error(404, $"no action '{action}'");
        }
    }

    /// <summary><c>/domains/{id}/devices/{kind}[/{dev}]</c>: list, attach, detach.</summary>
    private async Task<HttpResponse> DevicesAsync(string[] parts, HttpRequest request, CancellationToken cancellationToken)
    {
        var (id, kind) = (parts[1], parts[3]);
        if (kind is not ("vif" or "vbd")) return UnixHttpServer.Error(404, $"no device kind '{kind}' (vif or vbd)");
        switch (request.Method, parts.Length)
        {
            case ("GET", 4):
                return Json(200, await manager.ListDevicesAsync(id, kind, cancellationToken).ConfigureAwait(false), HyperdJson.Default.ListDeviceInfo);
            case ("POST", 4):
                try
                {
                    DeviceInfo added;
                    if (kind == "vif")
                    {
                        var vif = JsonSerializer.Deserialize(request.Body, HyperdJson.Default.VifConfig);
                        if (vif is null) return UnixHttpServer.Error(400, "empty vif");
                        added = await manager.AttachVifAsync(id, vif, cancellationToken).ConfigureAwait(false);
                    }
                    else
                    {
                        var disk = JsonSerializer.Deserialize(request.Body, HyperdJson.Default.DiskConfig);
                        if (disk is null) return UnixHttpServer.Error(400, "empty disk");
                        added = await manager.AttachDiskAsync(id, disk, cancellationToken).ConfigureAwait(false);
                    }
                    return Json(201, added, HyperdJson.Default.DeviceInfo);
                }
                catch (JsonException e) { return UnixHttpServer.Error(400, $"bad {kind}: {e.Message}"); }
            case ("DELETE", 5):
            {
                bool force = false;
                TimeSpan? timeout = null;
                foreach (var pair in request.Query.Split('&', StringSplitOptions.RemoveEmptyEntries))
                {
                    if (pair is "force=1" or "force=true") force = true;
                    else if (pair.StartsWith("timeout=", StringComparison.Ordinal)
                        && int.TryParse(pair.AsSpan(8), NumberStyles.None, CultureInfo.InvariantCulture, out var s) && s is > 0 and <= 3600)
                        timeout = TimeSpan.FromSeconds(s);
                }
                var forced = await manager.DetachAsync(id, kind, parts[4], force, timeout, cancellationToken).ConfigureAwait(false);
                return Json(200, new DetachResult(forced), HyperdJson.Default.DetachResult);
            }
            default:
                return UnixHttpServer.Error(405, $"{request.Method} {request.Path} is not supported");
        }
    }

    private static HttpResponse Json<T>(int status, T value, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> info) =>
        new(status, JsonSerializer.SerializeToUtf8Bytes(value, info));
}
