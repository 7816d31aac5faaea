using System.Globalization;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Store.Client;

namespace XenIo.Guest.Devices;

/// <summary>
/// One frontend device as a Linux guest's xenbus sees it (<c>drivers/xen/xenbus/xenbus_probe_frontend.c</c>):
/// its own directory <c>device/&lt;kind&gt;/&lt;devid&gt;</c>, the backend's directory and domain named there
/// (<c>backend</c>, <c>backend-id</c>), and the two <c>state</c> nodes the xenbus handshake turns on.
/// The backend path comes from dom0 through a node the guest cannot write, but is still checked: it must
/// be an absolute xenstore path.
/// </summary>
public sealed class XenbusDevice
{
    private XenbusDevice(XenstoreClient store, string kind, int devid, string frontendPath, string backendPath, ushort backendId)
    {
        Store = store;
        Kind = kind;
        Devid = devid;
        FrontendPath = frontendPath;
        BackendPath = backendPath;
        BackendId = backendId;
    }

    public XenstoreClient Store { get; }

    /// <summary><c>vif</c>, <c>vbd</c>, …</summary>
    public string Kind { get; }

    public int Devid { get; }

    /// <summary>Absolute: <c>/local/domain/&lt;domid&gt;/device/&lt;kind&gt;/&lt;devid&gt;</c>.</summary>
    public string FrontendPath { get; }

    public string BackendPath { get; }

    public ushort BackendId { get; }

    public override string ToString() => $"{Kind}/{Devid}";

    /// <summary>Reads <c>backend</c> and <c>backend-id</c>; null (and a log line) when the toolstack's nodes are missing or malformed.</summary>
    public static async Task<XenbusDevice?> ProbeAsync(FrontendContext context, string kind, int devid, CancellationToken cancellationToken)
    {
        var front = $"/local/domain/{context.Domid}/device/{kind}/{devid.ToString(CultureInfo.InvariantCulture)}";
        var backend = await context.Store.TryReadAsync($"{front}/backend", cancellationToken: cancellationToken).ConfigureAwait(false);
        var backendId = await context.Store.TryReadAsync($"{front}/backend-id", cancellationToken: cancellationToken).ConfigureAwait(false);
        if (backend is null || !backend.StartsWith('/') || backend.Length > XenstoreLimits.AbsPathMax
            || !ushort.TryParse(backendId, NumberStyles.None, CultureInfo.InvariantCulture, out var id))
        {
            context.Log($"{kind}/{devid}: backend or backend-id missing or malformed; device ignored");
            return null;
        }
        return new XenbusDevice(context.Store, kind, devid, front, backend, id);
    }

    /// <summary>Writes our <c>state</c> (<c>xenbus_switch_state</c>).</summary>
    public Task SwitchStateAsync(XenbusState state, uint transaction = 0, CancellationToken cancellationToken = default) =>
        Store.WriteAsync($"{FrontendPath}/state", ((int)state).ToString(CultureInfo.InvariantCulture), transaction, cancellationToken);

    /// <summary>The backend's <c>state</c>; <see cref="XenbusState.Unknown"/> when absent or not a state.</summary>
    public async Task<XenbusState> ReadBackendStateAsync(CancellationToken cancellationToken = default) =>
        ParseState(await Store.TryReadAsync($"{BackendPath}/state", cancellationToken: cancellationToken).ConfigureAwait(false));

    /// <summary>A key of the backend's directory (<c>feature-sg</c>, <c>sectors</c>, …); null when absent.</summary>
    public Task<string?> ReadBackendAsync(string key, CancellationToken cancellationToken = default) =>
        Store.TryReadAsync($"{BackendPath}/{key}", cancellationToken: cancellationToken);

    /// <summary>A key of our own directory (<c>mac</c>, <c>mtu</c>, …); null when absent.</summary>
    public Task<string?> ReadFrontendAsync(string key, CancellationToken cancellationToken = default) =>
        Store.TryReadAsync($"{FrontendPath}/{key}", cancellationToken: cancellationToken);

    /// <summary>A backend feature flag (<c>feature-…</c> = 1), false when absent or anything else.</summary>
    public async Task<bool> BackendFeatureAsync(string key, CancellationToken cancellationToken = default) =>
        await ReadBackendAsync(key, cancellationToken).ConfigureAwait(false) == "1";

    /// <summary>A backend number such as <c>multi-queue-max-queues</c>; <paramref name="fallback"/> when absent or malformed.</summary>
    public async Task<ulong> ReadBackendNumberAsync(string key, ulong fallback, CancellationToken cancellationToken = default) =>
        ulong.TryParse(await ReadBackendAsync(key, cancellationToken).ConfigureAwait(false), NumberStyles.None, CultureInfo.InvariantCulture, out var v)
            ? v : fallback;

    /// <summary>
    /// Watches the backend's <c>state</c> and returns each new value as it changes (the first one at once),
    /// until cancelled or the store connection ends. Repeated values are passed on: the caller decides.
    /// </summary>
    public async IAsyncEnumerable<XenbusState> BackendStatesAsync([System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await using var watch = await Store.SubscribeAsync($"{BackendPath}/state", $"{Kind}{Devid}-state", cancellationToken: cancellationToken).ConfigureAwait(false);
        while (await watch.Events.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
        {
            while (watch.Events.TryRead(out _)) { }
            yield return await ReadBackendStateAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Waits until the backend reaches a state <paramref name="accept"/> takes; returns it.</summary>
    public async Task<XenbusState> WaitForBackendAsync(Func<XenbusState, bool> accept, CancellationToken cancellationToken = default)
    {
        await foreach (var state in BackendStatesAsync(cancellationToken).ConfigureAwait(false))
            if (accept(state)) return state;
        throw new IOException($"{this}: the xenstore connection closed while waiting for the backend");
    }

    public static XenbusState ParseState(string? value) =>
        int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n is >= 1 and <= 8 ? (XenbusState)n : XenbusState.Unknown;
}
