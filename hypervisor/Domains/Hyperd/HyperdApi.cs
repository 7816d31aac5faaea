using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using XenIo.Hypervisor.Daemons;

namespace XenIo.Hypervisor.Domains.Hyperd;

/// <summary>An error answer: <c>{"error": "..."}</c>.</summary>
public sealed record ApiError(string Error);

/// <summary>One answer of hyperd's API: a status and a JSON (or empty) body.</summary>
public sealed record ApiReply(int Status, byte[] Body)
{
    public static ApiReply Empty(int status = 204) => new(status, []);
}

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
    /// <summary>Serves one request of <see cref="UnixHttpServer"/>, which logs an unexpected failure and answers it with a 500.</summary>
    public async Task ServeAsync(HttpRequest request, HttpResponse response, CancellationToken cancellationToken)
    {
        var reply = await HandleAsync(request, cancellationToken).ConfigureAwait(false);
        await response.WriteJsonAsync(reply.Status, reply.Body).ConfigureAwait(false);
    }

    public async Task<ApiReply> HandleAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        var parts = request.Segments;
        if (parts is ["info"] && request.Method == "GET") return Json(200, manager.Info(), HyperdJson.Default.HostInfo);
        if (parts.Length == 0 || parts[0] != "domains") return Error(404, $"no resource {request.Path}");
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
                    catch (JsonException e) { return Error(400, $"bad domain configuration: {e.Message}"); }
                    if (config is null) return Error(400, "empty domain configuration");
                    var domain = await manager.CreateAsync(config, cancellationToken).ConfigureAwait(false);
                    return Json(201, domain.Info(), HyperdJson.Default.DomainInfo);
                }
                case ("GET", 2):
                    return Json(200, (manager.Find(parts[1]) ?? throw DomainException.NotFound(parts[1])).Info(), HyperdJson.Default.DomainInfo);
                case ("DELETE", 2):
                    await manager.DestroyAsync(parts[1]).ConfigureAwait(false);
                    return ApiReply.Empty();
                case ("POST", 3):
                    return await ActAsync(parts[1], parts[2], request, cancellationToken).ConfigureAwait(false);
                default:
                    return Error(405, $"{request.Method} {request.Path} is not supported");
            }
        }
        catch (DomainException e)
        {
            return Error(e.Status, e.Message);
        }
    }

    private async Task<ApiReply> ActAsync(string id, string action, HttpRequest request, CancellationToken cancellationToken)
    {
        switch (action)
        {
            case "shutdown" or "reboot":
                var wait = Seconds(request, "wait");
                await manager.ShutdownAsync(id, action == "reboot", wait, cancellationToken).ConfigureAwait(false);
                return ApiReply.Empty();
            case "pause" or "unpause":
                manager.Pause(id, action == "pause");
                return ApiReply.Empty();
            case "mem-set":
                MemSetRequest? body;
                try { body = JsonSerializer.Deserialize(request.Body, HyperdJson.Default.MemSetRequest); }
                catch (JsonException e) { return Error(400, $"bad mem-set request: {e.Message}"); }
                if (body is null) return Error(400, "empty mem-set request");
                await manager.MemSetAsync(id, body.MemoryMib, cancellationToken).ConfigureAwait(false);
                return ApiReply.Empty();
            case "sysrq":
            {
                SysrqRequest? sysrq;
                try { sysrq = JsonSerializer.Deserialize(request.Body, HyperdJson.Default.SysrqRequest); }
                catch (JsonException e) { return Error(400, $"bad sysrq request: {e.Message}"); }
                if (sysrq?.Key is null) return Error(400, "empty sysrq request");
                await manager.SysrqAsync(id, sysrq.Key, cancellationToken).ConfigureAwait(false);
                return ApiReply.Empty();
            }
            case "rename":
            {
                RenameRequest? rename;
                try { rename = JsonSerializer.Deserialize(request.Body, HyperdJson.Default.RenameRequest); }
                catch (JsonException e) { return Error(400, $"bad rename request: {e.Message}"); }
                if (rename?.Name is null) return Error(400, "empty rename request");
                await manager.RenameAsync(id, rename.Name, cancellationToken).ConfigureAwait(false);
                return ApiReply.Empty();
            }
            default:
                return Error(404, $"no action '{action}'");
        }
    }

    /// <summary><c>/domains/{id}/devices/{kind}[/{dev}]</c>: list, attach, detach.</summary>
    private async Task<ApiReply> DevicesAsync(string[] parts, HttpRequest request, CancellationToken cancellationToken)
    {
        var (id, kind) = (parts[1], parts[3]);
        if (kind is not ("vif" or "vbd")) return Error(404, $"no device kind '{kind}' (vif or vbd)");
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
                        if (vif is null) return Error(400, "empty vif");
                        added = await manager.AttachVifAsync(id, vif, cancellationToken).ConfigureAwait(false);
                    }
                    else
                    {
                        var disk = JsonSerializer.Deserialize(request.Body, HyperdJson.Default.DiskConfig);
                        if (disk is null) return Error(400, "empty disk");
                        added = await manager.AttachDiskAsync(id, disk, cancellationToken).ConfigureAwait(false);
                    }
                    return Json(201, added, HyperdJson.Default.DeviceInfo);
                }
                catch (JsonException e) { return Error(400, $"bad {kind}: {e.Message}"); }
            case ("DELETE", 5):
            {
                var force = request.Query.TryGetValue("force", out var f) && f is "1" or "true";
                var timeout = Seconds(request, "timeout");
                var forced = await manager.DetachAsync(id, kind, parts[4], force, timeout, cancellationToken).ConfigureAwait(false);
                return Json(200, new DetachResult(forced), HyperdJson.Default.DetachResult);
            }
            default:
                return Error(405, $"{request.Method} {request.Path} is not supported");
        }
    }

    /// <summary>A query parameter of whole seconds, 1 to 3600; null when absent or out of range.</summary>
    private static TimeSpan? Seconds(HttpRequest request, string name) =>
        request.Query.TryGetValue(name, out var text) && int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) && seconds is > 0 and <= 3600
            ? TimeSpan.FromSeconds(seconds)
            : null;

    public static ApiReply Error(int status, string message) =>
        new(status, JsonSerializer.SerializeToUtf8Bytes(new ApiError(message), HyperdJson.Default.ApiError));

    private static ApiReply Json<T>(int status, T value, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> info) =>
        new(status, JsonSerializer.SerializeToUtf8Bytes(value, info));
}
