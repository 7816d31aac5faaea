using System.Globalization;
using System.Net.Sockets;
using XenIo.Guest.Devices;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Store.Client;
using XenIo.Net.Tap;

namespace XenIo.Guest.Netfront;

/// <summary>
/// One vif as a Linux guest's netfront runs it (<c>drivers/net/xen-netfront.c</c>): reads its MAC and
/// MTU, creates <c>eth&lt;devid&gt;</c> (a TAP with IFF_VNET_HDR) in the guest's network namespace with
/// the vif's MAC, MTU and addresses, and follows the backend through the xenbus handshake:
/// InitWait → rings, grants and event channels published in one transaction, then Connected;
/// backend Connected → frames move. When the backend goes away (Closing, Closed, its event channel's
/// end of file, a broken ring) the connection is torn down and rebuilt when the backend comes back
/// (InitWait again), while <c>eth&lt;devid&gt;</c> stays up so the guest's sockets survive.
/// </summary>
internal sealed class NetfrontDevice(FrontendContext context, int devid)
{
    private static readonly TimeSpan ReleasePatience = TimeSpan.FromSeconds(10);

    private readonly NetfrontCounters _counters = new();
    private XenbusState _ours = XenbusState.Initialising;
    private NetfrontQueue? _queue;
    private bool _connecting;
    private bool _running;
    private int _tapFd = -1;

    public int Devid => devid;

    public NetfrontCounters Counters => _counters;

    private void Log(string message) => context.Log($"netfront: vif/{devid}: {message}");

    public async Task RunAsync(CancellationToken stop)
    {
        var device = await XenbusDevice.ProbeAsync(context, "vif", devid, stop).ConfigureAwait(false);
        if (device is null) return;
        var settings = await ReadSettingsAsync(device, stop).ConfigureAwait(false);
        if (settings is null) return;
        using var tap = TapDevice.Create($"eth{devid.ToString(CultureInfo.InvariantCulture)}", offloads: false);
        _tapFd = tap.Fd;
        GuestInterface.SetCarrier(tap.Fd, on: false);
        Configure(tap.Name, settings);
        try
        {
            await FollowBackendAsync(device, tap, stop).ConfigureAwait(false);
        }
        finally
        {
            await TeardownAsync().ConfigureAwait(false);
            if (stop.IsCancellationRequested)
            {
                try { await device.SwitchStateAsync(XenbusState.Closed).WaitAsync(TimeSpan.FromSeconds(2)).ConfigureAwait(false); }
                catch (Exception e) when (e is XenstoreException or IOException or TimeoutException or ObjectDisposedException) { }
            }
            Log($"{tap.Name} removed");
        }
    }

    private async Task<VifSettings?> ReadSettingsAsync(XenbusDevice device, CancellationToken stop)
    {
        var macText = await device.ReadFrontendAsync("mac", stop).ConfigureAwait(false) ?? await device.ReadBackendAsync("mac", stop).ConfigureAwait(false);
        if (!VifSettings.TryParseMac(macText, out var mac))
        {
            Log($"mac '{macText}' is not a unicast MAC address; device ignored");
            return null;
        }
        var mtuText = await device.ReadFrontendAsync("mtu", stop).ConfigureAwait(false) ?? await device.ReadBackendAsync("mtu", stop).ConfigureAwait(false);
        if (!VifSettings.TryParseMtu(mtuText, out var mtu))
        {
            Log($"mtu '{mtuText}' is not {VifSettings.MinMtu}..{VifSettings.MaxMtu}; using {VifSettings.DefaultMtu}");
            mtu = VifSettings.DefaultMtu;
        }
        var ipText = await device.ReadBackendAsync("ip", stop).ConfigureAwait(false);
        if (!VifSettings.TryParseAddresses(ipText, out var addresses, out var error))
        {
            Log($"ip '{ipText}': {error}; no address applied");
            addresses = [];
        }
        // The gateway (xl.cfg `gateway`) is read from the vif's backend directory, beside `ip`.
        var gatewayText = await device.ReadBackendAsync("gateway", stop).ConfigureAwait(false);
        if (!VifSettings.TryParseGateway(gatewayText, out var gateway))
        {
            Log($"gateway '{gatewayText}' is not an IPv4 or IPv6 address; ignored");
            gateway = null;
        }
        return new VifSettings(mac, mtu, addresses, gateway);
    }

    /// <summary>MAC, MTU, up, addresses, default route; each failure is logged and the rest still applied.</summary>
    private void Configure(string name, VifSettings settings)
    {
        void Try(string what, Action action)
        {
            try { action(); }
            catch (Exception e) when (e is IOException or ArgumentException or SocketException) { Log($"{what}: {e.Message}"); }
        }
        Try("mac", () => GuestInterface.SetMac(name, settings.Mac));
        Try("mtu", () => GuestInterface.SetMtu(name, settings.Mtu));
        Try("up", () => GuestInterface.Up(name));
        foreach (var address in settings.Addresses) Try($"address {address}", () => GuestInterface.AddAddress(name, address));
        if (settings.Gateway is { } gateway)
        {
            if (settings.OnLink(gateway)) Try($"gateway {gateway}", () => GuestInterface.AddDefaultRoute(name, gateway));
            else Log($"gateway {gateway} is not inside any of {name}'s subnets; not applied");
        }
        Log($"{name} up: mac {settings.MacText}, mtu {settings.Mtu}, addresses [{string.Join(' ', settings.Addresses)}]"
            + (settings.Gateway is { } g ? $", gateway {g}" : ""));
    }

    /// <summary>The xenbus state machine of netfront's <c>netback_changed</c>, plus recovery from a backend that died.</summary>
    private async Task FollowBackendAsync(XenbusDevice device, TapDevice tap, CancellationToken stop)
    {
        _ours = XenbusDevice.ParseState(await device.ReadFrontendAsync("state", stop).ConfigureAwait(false));
        await using var watch = await device.Store.SubscribeAsync($"{device.BackendPath}/state", $"netfront-vif{devid}-state",
            cancellationToken: stop).ConfigureAwait(false);
        Task<bool>? changed = null;
        while (true)
        {
            changed ??= watch.Events.WaitToReadAsync(stop).AsTask();
            if (_queue is { } q) await Task.WhenAny(changed, q.Failed).ConfigureAwait(false);
            else await changed.ConfigureAwait(false);
            if (changed.IsCompleted)
            {
                if (!await changed.ConfigureAwait(false)) return;
                changed = null;
                while (watch.Events.TryRead(out _)) { }
            }
            stop.ThrowIfCancellationRequested();

            if (_queue is { Failed.IsCompleted: true } failed)
            {
                Log($"disconnected: {await failed.Failed.ConfigureAwait(false)}");
                await TeardownAsync().ConfigureAwait(false);
                // Initialising: a backend that starts again (netback restarted) sees a frontend to connect afresh.
                await SwitchAsync(device, XenbusState.Initialising, stop).ConfigureAwait(false);
            }

            XenbusState backend;
            // A backend directory removed under us (network-detach) reads as EACCES or ENOENT: no backend.
            try { backend = await device.ReadBackendStateAsync(stop).ConfigureAwait(false); }
            catch (XenstoreException) { backend = XenbusState.Unknown; }
            switch (backend)
            {
                case XenbusState.InitWait:
                    // Keys published, backend not there yet: it will read them when it gets to us.
                    if (_queue is not null && !_running) break;
                    if (_queue is not null || _ours is not (XenbusState.Initialising or XenbusState.Unknown))
                    {
                        // The backend started over (restarted, or reset after Closed): so do we.
                        if (_queue is not null) Log("backend restarted");
                        await TeardownAsync().ConfigureAwait(false);
                        await SwitchAsync(device, XenbusState.Initialising, stop).ConfigureAwait(false);
                    }
                    await ConnectAsync(device, tap, stop).ConfigureAwait(false);
                    break;
                case XenbusState.Connected:
                    if (_queue is { } queue && _connecting && !_running)
                    {
                        var features = new TxFeatures(
                            await device.BackendFeatureAsync("feature-sg", stop).ConfigureAwait(false),
                            await device.BackendFeatureAsync("feature-gso-tcpv4", stop).ConfigureAwait(false),
                            await device.BackendFeatureAsync("feature-gso-tcpv6", stop).ConfigureAwait(false));
                        var sg = features.ScatterGather;
                        if (!GuestInterface.SetOffloads(tap.Fd, csum: true, tso4: sg && features.GsoTcpV4, tso6: sg && features.GsoTcpV6))
                            Log("TUNSETOFFLOAD refused; large frames will be dropped");
                        queue.Start(sg ? features : features with { GsoTcpV4 = false, GsoTcpV6 = false });
                        _running = true;
                        GuestInterface.SetCarrier(tap.Fd, on: true);
                        Log($"connected to domain {queue.BackendId} ({(queue.SplitEventChannels ? "split event channels" : "one event channel")}, "
                            + $"sg {(sg ? "on" : "off")}, gso tcpv4 {(sg && features.GsoTcpV4 ? "on" : "off")}, tcpv6 {(sg && features.GsoTcpV6 ? "on" : "off")})");
                    }
                    break;
                case XenbusState.Closing:
                    if (_queue is not null) Log("backend closing");
                    await TeardownAsync().ConfigureAwait(false);
                    await SwitchAsync(device, XenbusState.Closed, stop).ConfigureAwait(false);
                    break;
                case XenbusState.Closed:
                    await TeardownAsync().ConfigureAwait(false);
                    // Linux netback's reconnect: a frontend going Initialising while the backend is Closed
                    // makes it prepare for a new connection (InitWait).
                    if (_ours != XenbusState.Initialising) await SwitchAsync(device, XenbusState.Initialising, stop).ConfigureAwait(false);
                    break;
                case XenbusState.Unknown:
                    if (_queue is not null) Log("backend state gone");
                    await TeardownAsync().ConfigureAwait(false);
                    break;
            }
        }
    }

    /// <summary>Linux's <c>talk_to_netback</c>: set up a queue, publish its keys in one transaction, then Connected.</summary>
    private async Task ConnectAsync(XenbusDevice device, TapDevice tap, CancellationToken stop)
    {
        if (!await device.BackendFeatureAsync("feature-rx-copy", stop).ConfigureAwait(false))
        {
            Log("the backend does not offer feature-rx-copy (the only receive mode netfront speaks); not connecting");
            return;
        }
        var split = await device.BackendFeatureAsync("feature-split-event-channels", stop).ConfigureAwait(false);
        NetfrontQueue queue;
        try { queue = NetfrontQueue.Create(context.Domain, device.BackendId, tap, split, _counters, Log); }
        catch (Exception e) when (e is InvalidOperationException or IOException)
        {
            Log($"cannot set up the rings: {e.Message}");
            return;
        }
        _queue = queue;
        var fe = device.FrontendPath;
        await device.Store.TransactAsync(async tx =>
        {
            async Task Write(string key, uint value) =>
                await device.Store.WriteAsync($"{fe}/{key}", value.ToString(CultureInfo.InvariantCulture), tx, stop).ConfigureAwait(false);
            async Task Remove(string key)
            {
                if (await device.Store.TryReadAsync($"{fe}/{key}", tx, stop).ConfigureAwait(false) is not null)
                    await device.Store.RmAsync($"{fe}/{key}", tx, stop).ConfigureAwait(false);
            }
            await Write("tx-ring-ref", queue.TxRingRef).ConfigureAwait(false);
            await Write("rx-ring-ref", queue.RxRingRef).ConfigureAwait(false);
            if (queue.SplitEventChannels)
            {
                await Write("event-channel-tx", queue.TxPort).ConfigureAwait(false);
                await Write("event-channel-rx", queue.RxPort).ConfigureAwait(false);
                await Remove("event-channel").ConfigureAwait(false);
            }
            else
            {
                await Write("event-channel", queue.TxPort).ConfigureAwait(false);
                await Remove("event-channel-tx").ConfigureAwait(false);
                await Remove("event-channel-rx").ConfigureAwait(false);
            }
            await Write("request-rx-copy", 1).ConfigureAwait(false);
            await Write("feature-rx-notify", 1).ConfigureAwait(false);
            await Write("feature-sg", 1).ConfigureAwait(false);
            await Write("feature-gso-tcpv4", 1).ConfigureAwait(false);
            await Write("feature-gso-tcpv6", 1).ConfigureAwait(false);
            await Write("feature-ipv6-csum-offload", 1).ConfigureAwait(false);
        }, cancellationToken: stop).ConfigureAwait(false);
        _connecting = true;
        // xennet_connect is followed by xenbus_switch_state(Connected): netfront skips Initialised.
        await SwitchAsync(device, XenbusState.Connected, stop).ConfigureAwait(false);
    }

    private async Task SwitchAsync(XenbusDevice device, XenbusState state, CancellationToken stop)
    {
        if (_ours == state) return;
        await device.SwitchStateAsync(state, cancellationToken: stop).ConfigureAwait(false);
        _ours = state;
    }

    private async Task TeardownAsync()
    {
        var queue = _queue;
        _queue = null;
        if (_running && _tapFd >= 0) GuestInterface.SetCarrier(_tapFd, on: false);
        _connecting = _running = false;
        if (queue is null) return;
        // Stop() runs before the first await inside: the threads are gone before a new queue uses the TAP.
        var release = queue.ReleaseAsync(ReleasePatience);
        _ = release.ContinueWith(t => Log($"releasing the old rings failed: {t.Exception?.GetBaseException().Message}"),
            CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
        await Task.Yield();
    }
}
