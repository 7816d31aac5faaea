using System.Collections.Concurrent;
using System.Globalization;
using System.Threading.Channels;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Hypercalls;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;
using XenIo.Netback.Vif;
using XenIo.VSwitch.Core;

namespace XenIo.Netback.Xenbus;

/// <summary>What the API lists about one vif backend.</summary>
public sealed record VifInfo(string Name, ushort Domid, int Devid, string Bridge, XenbusState BackendState, XenbusState FrontendState,
    VifPort Port, VifSettings Settings);

/// <summary>
/// netback's xenbus driver for vifs: watches <c>/local/domain/0/backend/vif</c>, creates a
/// <see cref="VifPort"/> per backend device (named by <c>vifname</c>, joined to the bridge named by
/// <c>bridge</c>), runs each device's <see cref="VifBackendMachine"/> against its frontend's state, and
/// removes the device with its backend node. Every watch event only marks its device dirty; one loop
/// re-reads dirty devices, so bursts of guest writes coalesce and memory stays bounded (XSA-349).
/// Started over existing nodes (a netback restart), it takes them up and sends each frontend through
/// a reconnect: the backend goes back to InitWait and a frontend found Connected is served only once
/// it has published its keys again. Nothing a guest writes throws out of <see cref="RunAsync"/>.
/// </summary>
public sealed class VifBackendService(
    XenstoreClient xenstore,
    Func<HypercallClient> hypercalls,
    Func<string, Bridge?> findBridge,
    Action<string> log,
    int maxQueues = 4) : IAsyncDisposable
{
    public const string BackendRoot = "/local/domain/0/backend/vif";
    private const string ScanKey = "";

    /// <summary>How long a frontend found Connected at start-up gets to publish new rings before its old ones are served.</summary>
    public static readonly TimeSpan RestartGrace = TimeSpan.FromSeconds(3);

    private readonly Dictionary<string, Device> _devices = [];
    private readonly ConcurrentDictionary<string, byte> _dirty = new();
    private readonly Channel<bool> _signal = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly Lock _snapshotGate = new();
    private VifInfo[] _snapshot = [];
    private HypercallClient? _hypercalls;
    private readonly int _maxQueues = Math.Clamp(maxQueues, 1, 64);

    private sealed class Device(string key, ushort domid, int devid, string backendPath, string frontendPath, VifPort port, VifBackendMachine machine)
    {
        public readonly string Key = key;
        public readonly ushort Domid = domid;
        public readonly int Devid = devid;
        public readonly string BackendPath = backendPath;
        public readonly string FrontendPath = frontendPath;
        public readonly VifPort Port = port;
        public readonly VifBackendMachine Machine = machine;
        public VifSettings Settings = new();
        public XenstoreWatchSubscription? FrontendWatch;
        public Task? FrontendPump;
        public string? PendingFailure;
        public bool AwaitingFrontendRestart;
        public DateTime AwaitingSince;
        public string? StaleRings;
        public XenbusState FrontendState;
        public bool BridgeComplained;
        public string? AttachError;
    }

    /// <summary>Every vif backend as last seen (a snapshot, safe from any thread).</summary>
    public IReadOnlyList<VifInfo> Vifs => Volatile.Read(ref _snapshot);

    /// <summary>Serves until cancelled; throws only when xenstore itself goes away.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        await using var root = await xenstore.SubscribeAsync(BackendRoot, capacity: 256, cancellationToken: cancellationToken).ConfigureAwait(false);
        var pump = PumpAsync(root, path => KeyOf(path), cancellationToken);
        try
        {
            MarkDirty(ScanKey);
            while (!cancellationToken.IsCancellationRequested)
            {
                using (var tick = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
                {
                    tick.CancelAfter(TimeSpan.FromSeconds(1));
                    try
                    {
                        await _signal.Reader.ReadAsync(tick.Token).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                    {
                    }
                }
                foreach (var device in _devices.Values)
                    if (device.AwaitingFrontendRestart) _dirty[device.Key] = 0;
                await ProcessDirtyAsync(cancellationToken).ConfigureAwait(false);
                foreach (var device in _devices.Values) EnsureAttached(device);
                PublishSnapshot();
            }
        }
        finally
        {
            await pump.ConfigureAwait(false);
        }
    }

    private async Task ProcessDirtyAsync(CancellationToken cancellationToken)
    {
        if (_dirty.TryRemove(ScanKey, out _)) await ScanAsync(cancellationToken).ConfigureAwait(false);
        foreach (var key in _dirty.Keys.ToArray())
        {
            _dirty.TryRemove(key, out _);
            try
            {
                await ResyncAsync(key, cancellationToken).ConfigureAwait(false);
            }
            catch (XenstoreException e)
            {
                // A node removed between two reads, a permission the guest changed: look again later.
                log($"vif {key}: {e.Message}");
            }
            catch (Exception e) when (e is not (IOException or OperationCanceledException))
            {
                // Our bug, not the guest's: that device is left as it is, the others are served.
                log($"vif {key}: {e.GetType().Name}: {e.Message}");
            }
        }
    }

    private void MarkDirty(string key)
    {
        _dirty[key] = 0;
        _signal.Writer.TryWrite(true);
    }

    /// <summary>Backend paths map to "domid/devid"; the root and a domain's directory ask for a scan.</summary>
    private static string KeyOf(string path)
    {
        if (!path.StartsWith(BackendRoot, StringComparison.Ordinal)) return ScanKey;
        var rest = path[BackendRoot.Length..].Trim('/').Split('/');
        return rest.Length >= 2 ? $"{rest[0]}/{rest[1]}" : ScanKey;
    }

    private async Task PumpAsync(XenstoreWatchSubscription subscription, Func<string, string> keyOf, CancellationToken cancellationToken)
    {
        try
        {
            await foreach (var e in subscription.Events.ReadAllAsync(cancellationToken).ConfigureAwait(false)) MarkDirty(keyOf(e.Path));
        }
        catch (OperationCanceledException)
        {
        }
        catch (ChannelClosedException)
        {
        }
    }

    private async Task ScanAsync(CancellationToken cancellationToken)
    {
        var present = new HashSet<string>();
        foreach (var dom in await TryDirectoryAsync(BackendRoot, cancellationToken).ConfigureAwait(false))
            foreach (var dev in await TryDirectoryAsync($"{BackendRoot}/{dom}", cancellationToken).ConfigureAwait(false))
                present.Add($"{dom}/{dev}");
        foreach (var key in present) _dirty[key] = 0;
        foreach (var key in _devices.Keys) _dirty[key] = 0;
    }

    private async Task<string[]> TryDirectoryAsync(string path, CancellationToken cancellationToken)
    {
        try
        {
            return await xenstore.DirectoryAsync(path, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (XenstoreException e) when (e.Error == XsError.ENOENT)
        {
            return [];
        }
    }

    private async Task ResyncAsync(string key, CancellationToken cancellationToken)
    {
        var parts = key.Split('/');
        if (parts.Length != 2 || !ushort.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var domid)
            || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var devid))
            return;
        var backendPath = $"{BackendRoot}/{domid}/{devid}";
        _devices.TryGetValue(key, out var device);
        var backend = await ReadKeysAsync(backendPath, ["frontend", "frontend-id", "online", "mac", "ip", "rate", "mtu", "vlan", "bridge", "vifname"], cancellationToken).ConfigureAwait(false);
        if (backend is null)
        {
            if (device is not null) await RemoveAsync(device).ConfigureAwait(false);
            return;
        }
        if (device is null)
        {
            device = await CreateAsync(key, domid, devid, backendPath, backend, cancellationToken).ConfigureAwait(false);
            if (device is null) return;
        }
        else
        {
            ApplySettings(device, backend);
        }

        if (backend.TryGetValue("online", out var online) && online == "0")
            await ExecuteAsync(device, device.Machine.Detach(), cancellationToken).ConfigureAwait(false);
        if (Interlocked.Exchange(ref device.PendingFailure, null) is { } failure)
            await ExecuteAsync(device, device.Machine.OnRingBroken(failure), cancellationToken).ConfigureAwait(false);

        var feState = await ReadStateAsync($"{device.FrontendPath}/state", cancellationToken).ConfigureAwait(false);
        device.FrontendState = feState;
        if (device.AwaitingFrontendRestart)
        {
            // Still the rings of the netback that died: give the frontend time to publish new ones. A
            // frontend that keeps them (or reconnects faster than we look) is served on them after the
            // grace period, resuming at the rings' own indices.
            if (feState is XenbusState.Connected or XenbusState.Initialised
                && DateTime.UtcNow - device.AwaitingSince < RestartGrace
                && await RingSignatureAsync(device, cancellationToken).ConfigureAwait(false) == device.StaleRings)
                return;
            device.AwaitingFrontendRestart = false;
        }
        IReadOnlyDictionary<string, string> keys = device.Machine.NeedsKeys(feState)
            ? await ReadFrontendKeysAsync(device, cancellationToken).ConfigureAwait(false)
            : new Dictionary<string, string>();
        await ExecuteAsync(device, device.Machine.OnFrontendChanged(feState, keys), cancellationToken).ConfigureAwait(false);
    }

    private async Task<Device?> CreateAsync(string key, ushort domid, int devid, string backendPath, Dictionary<string, string> backend, CancellationToken cancellationToken)
    {
        var expected = $"/local/domain/{domid}/device/vif/{devid}";
        if (!backend.TryGetValue("frontend", out var frontend) || frontend != expected
            || !backend.TryGetValue("frontend-id", out var feId) || feId != domid.ToString(CultureInfo.InvariantCulture))
        {
            // Not (yet) a complete toolstack node; the watch brings us back when it is.
            return null;
        }
        var errors = new List<string>();
        var settings = VifSettings.Parse(k => backend.GetValueOrDefault(k), errors);
        var name = settings.Vifname ?? $"vif{domid}.{devid}";
        var port = new VifPort(name, domid, devid);
        var device = new Device(key, domid, devid, backendPath, frontend, port, new VifBackendMachine(_maxQueues)) { Settings = settings };
        port.Failed += (_, why) =>
        {
            Volatile.Write(ref device.PendingFailure, why);
            MarkDirty(key);
        };
        foreach (var e in errors) log($"vif {name}: {e}");
        Configure(port, settings);
        _devices[key] = device;
        EnsureAttached(device);

        // A frontend already Connected means a netback before us served it: make it reconnect.
        var feState = await ReadStateAsync($"{frontend}/state", cancellationToken).ConfigureAwait(false);
        if (feState is XenbusState.Connected or XenbusState.Initialised)
        {
            device.AwaitingFrontendRestart = true;
            device.AwaitingSince = DateTime.UtcNow;
            device.StaleRings = await RingSignatureAsync(device, cancellationToken).ConfigureAwait(false);
            log($"vif {name}: frontend of domain {domid} was connected to an earlier netback; asking it to reconnect");
        }
        device.FrontendWatch = await xenstore.SubscribeAsync(frontend, capacity: 16, cancellationToken: cancellationToken).ConfigureAwait(false);
        device.FrontendPump = PumpAsync(device.FrontendWatch, _ => key, cancellationToken);
        await ExecuteAsync(device, device.Machine.Start(), cancellationToken).ConfigureAwait(false);
        await xenstore.WriteAsync($"{backendPath}/hotplug-status", "connected", cancellationToken: cancellationToken).ConfigureAwait(false);
        log($"vif {name} (domain {domid}, device {devid}) on bridge {settings.Bridge}");
        return device;
    }

    private void ApplySettings(Device device, Dictionary<string, string> backend)
    {
        var errors = new List<string>();
        var settings = VifSettings.Parse(k => backend.GetValueOrDefault(k), errors);
        if (settings.SameAs(device.Settings)) return;
        var old = device.Settings;
        device.Settings = settings;
        if (old.Rate != settings.Rate)
            log($"vif {device.Port.Name}: rate {(settings.Rate is { } r ? $"{r.BytesPerInterval} bytes per {r.IntervalUsecs} us" : "unlimited")}");
        foreach (var e in errors) log($"vif {device.Port.Name}: {e}");
        Configure(device.Port, settings);
        if (old.Bridge != settings.Bridge)
        {
            device.Port.Bridge?.RemovePort(device.Port);
            device.BridgeComplained = false;
        }
        EnsureAttached(device);
    }

    private static void Configure(VifPort port, VifSettings settings)
    {
        port.Filter.Configure(settings.Mac, settings.Ipv4);
        port.SetRate(settings.Rate);
        port.Mtu = settings.Mtu;
        var vlan = settings.Vlan is { } tag ? PortVlan.Access(tag) : PortVlan.Default;
        if (port.Vlan != vlan) port.Vlan = vlan;
    }

    /// <summary>
    /// Joins the port to the bridge its <c>bridge</c> key names (again, if the switch re-created that
    /// bridge). While no bridge has that name the vif is on none, as Xen leaves a vif whose bridge is
    /// gone: a port kept on a deleted bridge would switch frames where no listing, aging or capture sees.
    /// </summary>
    private void EnsureAttached(Device device)
    {
        var bridge = findBridge(device.Settings.Bridge);
        var port = device.Port;
        if (bridge is null)
        {
            port.Bridge?.RemovePort(port);
            if (!device.BridgeComplained) log($"vif {port.Name}: bridge {device.Settings.Bridge} does not exist; the vif joins it when it does");
            device.BridgeComplained = true;
            return;
        }
        if (port.Bridge == bridge) return;
        port.Bridge?.RemovePort(port);
        try
        {
            bridge.AddPort(port);
            device.BridgeComplained = false;
            device.AttachError = null;
        }
        catch (InvalidOperationException e)
        {
            if (device.AttachError != e.Message) log($"vif {port.Name}: {e.Message}");
            device.AttachError = e.Message;
        }
    }

    private async Task ExecuteAsync(Device device, IReadOnlyList<VifAction> actions, CancellationToken cancellationToken)
    {
        var queue = new Queue<VifAction>(actions);
        while (queue.TryDequeue(out var action))
        {
            switch (action)
            {
                case VifWriteKey w:
                    await xenstore.WriteUnderAsync(device.BackendPath, w.Key, w.Value, cancellationToken).ConfigureAwait(false);
                    break;
                case VifSwitchState s:
                    await xenstore.WriteUnderAsync(device.BackendPath, "state", ((int)s.State).ToString(CultureInfo.InvariantCulture), cancellationToken).ConfigureAwait(false);
                    break;
                case VifReportError e:
                    log($"vif {device.Port.Name} (domain {device.Domid}): {e.Message}");
                    break;
                case VifDisconnect:
                    device.Port.Disconnect();
                    break;
                case VifConnect c:
                    var hc = Hypercalls();
                    var error = "hyperd's hypercall socket is not reachable";
                    var follow = hc is not null && device.Port.TryConnect(hc, c.Setup, out error)
                        ? device.Machine.OnConnected()
                        : device.Machine.OnConnectFailed(Forget(error));
                    foreach (var a in follow) queue.Enqueue(a);
                    if (device.Port.IsConnected)
                        log($"vif {device.Port.Name}: connected, {c.Setup.Queues.Count} queue(s){(c.Setup.Queues[0].SplitEventChannels ? ", split event channels" : "")}");
                    break;
            }
        }
    }

    /// <summary>A connect that failed because hyperd went away drops our client so the next one reconnects.</summary>
    private string Forget(string error)
    {
        if (error.Contains("hypercall connection", StringComparison.Ordinal))
        {
            _hypercalls?.Dispose();
            _hypercalls = null;
        }
        return error;
    }

    private HypercallClient? Hypercalls()
    {
        if (_hypercalls is not null) return _hypercalls;
        try
        {
            _hypercalls = hypercalls();
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
        {
            log($"vif: hyperd's hypercall socket: {e.Message}");
        }
        return _hypercalls;
    }

    private async Task RemoveAsync(Device device)
    {
        _devices.Remove(device.Key);
        device.Port.Disconnect();
        device.Port.Bridge?.RemovePort(device.Port);
        device.Port.Dispose();
        if (device.FrontendWatch is not null) await device.FrontendWatch.DisposeAsync().ConfigureAwait(false);
        if (device.FrontendPump is not null) await device.FrontendPump.ConfigureAwait(false);
        log($"vif {device.Port.Name} removed");
    }

    private async Task<Dictionary<string, string>?> ReadKeysAsync(string dir, IEnumerable<string> keys, CancellationToken cancellationToken)
    {
        if (await xenstore.TryReadAsync(dir, cancellationToken: cancellationToken).ConfigureAwait(false) is null) return null;
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var k in keys)
            if (await xenstore.TryReadAsync($"{dir}/{k}", cancellationToken: cancellationToken).ConfigureAwait(false) is { } v)
                result[k] = v;
        return result;
    }

    private async Task<XenbusState> ReadStateAsync(string path, CancellationToken cancellationToken)
    {
        var text = await xenstore.TryReadAsync(path, cancellationToken: cancellationToken).ConfigureAwait(false);
        // A missing or unreadable state is Unknown (Linux's xenbus_read_driver_state).
        return text is not null && uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var s) && s <= 8 ? (XenbusState)s : XenbusState.Unknown;
    }

    /// <summary>Only the keys netback uses, and queue keys only for the queues asked for (bounded by our maximum).</summary>
    private async Task<IReadOnlyDictionary<string, string>> ReadFrontendKeysAsync(Device device, CancellationToken cancellationToken)
    {
        var keys = await ReadKeysAsync(device.FrontendPath, VifFrontendKeys.TopKeys.Concat(VifFrontendKeys.QueueKeys), cancellationToken).ConfigureAwait(false)
            ?? new Dictionary<string, string>();
        var queues = VifFrontendKeys.RequestedQueues(keys, _maxQueues);
        if (queues > 1)
            for (var i = 0; i < queues; i++)
                foreach (var k in VifFrontendKeys.QueueKeys)
                    if (await xenstore.TryReadAsync($"{device.FrontendPath}/queue-{i}/{k}", cancellationToken: cancellationToken).ConfigureAwait(false) is { } v)
                        keys[$"queue-{i}/{k}"] = v;
        return keys;
    }

    private async Task<string> RingSignatureAsync(Device device, CancellationToken cancellationToken)
    {
        var keys = await ReadFrontendKeysAsync(device, cancellationToken).ConfigureAwait(false);
        return string.Join(";", keys.Where(kv => kv.Key.Contains("ring-ref", StringComparison.Ordinal) || kv.Key.Contains("event-channel", StringComparison.Ordinal))
            .OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key}={kv.Value}"));
    }

    private void PublishSnapshot()
    {
        var list = _devices.Values.Select(d => new VifInfo(d.Port.Name, d.Domid, d.Devid, d.Settings.Bridge, d.Machine.State, d.FrontendState, d.Port, d.Settings))
            .OrderBy(v => v.Domid).ThenBy(v => v.Devid).ToArray();
        lock (_snapshotGate) Volatile.Write(ref _snapshot, list);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var device in _devices.Values.ToArray()) await RemoveAsync(device).ConfigureAwait(false);
        _hypercalls?.Dispose();
        _hypercalls = null;
        PublishSnapshot();
    }
}
