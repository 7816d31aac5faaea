using XenIo.VSwitch.Capture;
using XenIo.VSwitch.Core;
using XenIo.VSwitch.Ports;

namespace XenIo.VSwitch.Management;

/// <summary>
/// Makes the live bridges, ports and mirrors match a <see cref="SwitchConfig"/>: adds and removes bridges
/// and ports at runtime, re-creates a port whose kind or options changed, and changes VLAN, MTU, rate
/// limits and admin state in place (the port keeps its TAP, socket and counters). A bridge whose FDB
/// limit changes is re-created (the table is sized once). Failures (a TAP the kernel refuses, bad
/// options) are reported per port and leave the rest applied; nothing throws out of <see cref="Apply"/>.
/// </summary>
public sealed class SwitchReconciler(PortFactory factory, Action<string>? log = null) : IDisposable
{
    private sealed class LiveBridge(Bridge bridge, BridgeConfig config)
    {
        public readonly Bridge Bridge = bridge;
        public BridgeConfig Config = config;
        public readonly Dictionary<string, (SwitchPort Port, PortConfig Config)> Ports = [];
        public readonly Dictionary<string, (Mirror Mirror, MirrorConfig Config, FileCaptureSink File)> Mirrors = [];
    }

    private readonly Lock _gate = new();
    private readonly Dictionary<string, LiveBridge> _bridges = [];
    private IReadOnlyList<string> _errors = [];

    /// <summary>The live bridges by name (a snapshot).</summary>
    public IReadOnlyDictionary<string, Bridge> Bridges
    {
        get
        {
            lock (_gate) return _bridges.ToDictionary(kv => kv.Key, kv => kv.Value.Bridge);
        }
    }

    /// <summary>The persistent mirrors that are capturing now, with their counters (a snapshot).</summary>
    public IReadOnlyList<MirrorStatus> Mirrors
    {
        get
        {
            lock (_gate)
                return [.. _bridges.Values.SelectMany(live => live.Mirrors.Values.Select(m =>
                    new MirrorStatus(live.Bridge.Name, m.Config, m.Mirror.Captured, m.Mirror.FilteredOut, m.File.Dropped, m.File.Error)))];
        }
    }

    /// <summary>What the last <see cref="Apply"/> could not do (parse errors are the caller's to add).</summary>
    public IReadOnlyList<string> Errors => Volatile.Read(ref _errors);

    public Bridge? FindBridge(string name)
    {
        lock (_gate) return _bridges.TryGetValue(name, out var b) ? b.Bridge : null;
    }

    public IReadOnlyList<string> Apply(SwitchConfig desired)
    {
        var errors = new List<string>();
        lock (_gate)
        {
            foreach (var name in _bridges.Keys.ToArray())
                if (!desired.Bridges.TryGetValue(name, out var want) || want.FdbLimit != _bridges[name].Config.FdbLimit)
                    RemoveBridge(name);

            foreach (var want in desired.Bridges.Values)
            {
                if (!_bridges.TryGetValue(want.Name, out var live))
                {
                    live = new LiveBridge(new Bridge(want.Name, want.FdbLimit, TimeSpan.FromSeconds(want.FdbAgingSeconds)), want);
                    _bridges[want.Name] = live;
                    Log($"bridge {want.Name} added");
                }
                live.Config = want;
                live.Bridge.Fdb.Aging = TimeSpan.FromSeconds(want.FdbAgingSeconds);
                ReconcilePorts(live, want, errors);
            }
            // Patch ports last: both ends' bridges exist by now.
            foreach (var want in desired.Bridges.Values)
                foreach (var port in want.Ports.Values.Where(p => p.Kind == "patch"))
                    AddPatch(desired, want, port, errors);
            foreach (var want in desired.Bridges.Values) ReconcileMirrors(_bridges[want.Name], want, errors);
        }
        Volatile.Write(ref _errors, errors);
        foreach (var e in errors) Log(e);
        return errors;
    }

    private void ReconcilePorts(LiveBridge live, BridgeConfig want, List<string> errors)
    {
        foreach (var (name, (port, config)) in live.Ports.ToArray())
        {
            if (want.Ports.TryGetValue(name, out var wanted) && wanted.SameIdentity(config)
                && (port is not PatchPort pp || pp.Peer.Bridge is not null)) continue;
            RemovePort(live, name);
        }
        foreach (var wanted in want.Ports.Values)
        {
            if (live.Ports.TryGetValue(wanted.Name, out var existing))
            {
                Configure(existing.Port, wanted, want, errors, live);
                continue;
            }
            if (wanted.Kind == "patch") continue;
            SwitchPort? port = null;
            try
            {
                port = factory.Create(wanted);
                Configure(port, wanted, want, errors, live);
                live.Bridge.AddPort(port);
                live.Ports[wanted.Name] = (port, wanted);
                Log($"port {want.Name}/{wanted.Name} ({wanted.Kind}) added");
            }
            catch (Exception e)
            {
                port?.Dispose();
                errors.Add($"port {want.Name}/{wanted.Name}: {e.Message}");
            }
        }
    }

    private void AddPatch(SwitchConfig desired, BridgeConfig want, PortConfig port, List<string> errors)
    {
        var live = _bridges[want.Name];
        if (live.Ports.ContainsKey(port.Name)) return;
        try
        {
            var (peerBridge, peerPort) = PortFactory.PatchPeer(port);
            if (!desired.Bridges.TryGetValue(peerBridge, out var peerWant) || !peerWant.Ports.TryGetValue(peerPort, out var peerConfig) || peerConfig.Kind != "patch")
                throw new ArgumentException($"peer {peerBridge}/{peerPort} is not a configured patch port");
            var (back, backPort) = PortFactory.PatchPeer(peerConfig);
            if (back != want.Name || backPort != port.Name)
                throw new ArgumentException($"peer {peerBridge}/{peerPort} names {back}/{backPort}, not {want.Name}/{port.Name}");
            var peerLive = _bridges[peerBridge];
            if (peerLive.Ports.ContainsKey(peerPort)) RemovePort(peerLive, peerPort);
            var (a, b) = PatchPort.CreatePair(port.Name, peerPort);
            Configure(a, port, want, errors, live);
            Configure(b, peerConfig, peerWant, errors, peerLive);
            live.Bridge.AddPort(a);
            live.Ports[port.Name] = (a, port);
            peerLive.Bridge.AddPort(b);
            peerLive.Ports[peerPort] = (b, peerConfig);
            Log($"patch {want.Name}/{port.Name} <-> {peerBridge}/{peerPort} added");
        }
        catch (Exception e)
        {
            errors.Add($"port {want.Name}/{port.Name}: {e.Message}");
        }
    }

    private static void Configure(SwitchPort port, PortConfig config, BridgeConfig bridge, List<string> errors, LiveBridge live)
    {
        try
        {
            var existing = live.Ports.TryGetValue(config.Name, out var old) && old.Port == port;
            // Setting a VLAN flushes the port's FDB entries, so only a real change does it.
            if (!existing || old.Config.VlanMode != config.VlanMode || old.Config.Tag != config.Tag || old.Config.Trunks != config.Trunks)
                port.Vlan = config.BuildVlan();
            if (config.Mtu is { } mtu) port.Mtu = mtu;
            else if (port is not VxlanPort) port.Mtu = bridge.Mtu;
            port.AdminUp = config.AdminUp;
            if (existing)
            {
                if (old.Config.Ingress != config.Ingress) port.IngressLimit = config.Ingress.Build();
                if (old.Config.Egress != config.Egress) port.EgressLimit = config.Egress.Build();
                live.Ports[config.Name] = (port, config);
            }
            else
            {
                port.IngressLimit = config.Ingress.Build();
                port.EgressLimit = config.Egress.Build();
            }
        }
        catch (Exception e)
        {
            errors.Add($"port {bridge.Name}/{config.Name}: {e.Message}");
        }
    }

    private void ReconcileMirrors(LiveBridge live, BridgeConfig want, List<string> errors)
    {
        foreach (var (name, (mirror, config, _)) in live.Mirrors.ToArray())
        {
            if (want.Mirrors.TryGetValue(name, out var wanted) && wanted == config) continue;
            mirror.Dispose();
            live.Mirrors.Remove(name);
        }
        foreach (var wanted in want.Mirrors.Values)
        {
            if (live.Mirrors.ContainsKey(wanted.Name)) continue;
            try
            {
                // A restarted netback continues the file; add-mirror is what starts a new one.
                var sink = FileCaptureSink.Open(wanted.File, wanted.PcapNg, wanted.Snaplen, log);
                var selection = new MirrorSelection(wanted.Ports.Count == 0 ? null : wanted.Ports.ToHashSet(), wanted.Directions,
                    wanted.Vlans is null ? null : VlanSet.Parse(wanted.Vlans));
                Mirror mirror;
                try
                {
                    mirror = new Mirror(wanted.Name, sink, selection, wanted.Snaplen, wanted.Filter);
                }
                catch
                {
                    sink.Dispose();
                    throw;
                }
                mirror.Attach(live.Bridge);
                live.Mirrors[wanted.Name] = (mirror, wanted, sink);
            }
            catch (Exception e)
            {
                errors.Add($"mirror {want.Name}/{wanted.Name}: {e.Message}");
            }
        }
    }

    /// <summary>
    /// Brings persistent mirrors' files up to date (called on the housekeeping timer). Outside the lock:
    /// a slow disk delays this call, not the API or a reconcile; a file that fails says so itself, once.
    /// </summary>
    public void FlushMirrors()
    {
        Mirror[] mirrors;
        lock (_gate) mirrors = [.. _bridges.Values.SelectMany(live => live.Mirrors.Values.Select(m => m.Mirror))];
        foreach (var mirror in mirrors) mirror.Flush();
    }

    private void RemovePort(LiveBridge live, string name)
    {
        var (port, _) = live.Ports[name];
        live.Bridge.RemovePort(port);
        live.Ports.Remove(name);
        if (port is PatchPort patch && patch.Peer.Bridge is { } other && _bridges.TryGetValue(other.Name, out var otherLive))
        {
            other.RemovePort(patch.Peer);
            otherLive.Ports.Remove(patch.Peer.Name);
            patch.Peer.Dispose();
        }
        port.Dispose();
        Log($"port {live.Bridge.Name}/{name} removed");
    }

    private void RemoveBridge(string name)
    {
        var live = _bridges[name];
        foreach (var port in live.Ports.Keys.ToArray())
            if (live.Ports.ContainsKey(port)) RemovePort(live, port);
        foreach (var (mirror, _, _) in live.Mirrors.Values) mirror.Dispose();
        _bridges.Remove(name);
        Log($"bridge {name} removed");
    }

    private void Log(string message) => log?.Invoke(message);

    public void Dispose()
    {
        lock (_gate)
            foreach (var name in _bridges.Keys.ToArray()) RemoveBridge(name);
    }
}

/// <summary>
/// A persistent mirror as it runs: its configuration, the frames it took and those its filter left out,
/// those its file could not keep up with (or that came after it failed), and why the file failed.
/// </summary>
public sealed record MirrorStatus(string Bridge, MirrorConfig Config, long Captured, long FilteredOut, long Dropped = 0, string? Error = null);
