using XenIo.Net.Frames;
using XenIo.VSwitch.Capture;
using XenIo.VSwitch.Core;
using XenIo.VSwitch.Ports;

namespace XenIo.VSwitch.Management;

/// <summary>
/// Makes the live bridges, ports, mirrors and static FDB entries match a <see cref="SwitchConfig"/>: adds
/// and removes bridges and ports at runtime, re-creates a port whose kind or options changed, and changes
/// VLAN, MTU, rate limits and admin state in place (the port keeps its TAP, socket and counters). A bridge
/// whose FDB limit changes is re-created (the table is sized once). A removed bridge lets go of every port
/// on it, those it did not create (vifs) included. A TAP or internal port's MTU is its interface's too.
/// Failures (a TAP the kernel refuses, bad options, a static entry for a port the bridge lacks) are
/// reported per port or entry and leave the rest applied; a port that fails is left detached and tried
/// again by <see cref="RetryFailed"/>, except a live TAP whose interface refuses a new MTU, which stays as
/// it was. Nothing throws out of <see cref="Apply"/>.
/// </summary>
public sealed class SwitchReconciler(PortFactory factory, Action<string>? log = null) : IDisposable
{
    private sealed class LiveBridge(Bridge bridge, BridgeConfig config)
    {
        public readonly Bridge Bridge = bridge;
        public BridgeConfig Config = config;
        public readonly Dictionary<string, (SwitchPort Port, PortConfig Config)> Ports = [];
        public readonly Dictionary<string, (Mirror Mirror, MirrorConfig Config, FileCaptureSink File)> Mirrors = [];
        /// <summary>The (MAC, VLAN) of every static entry this reconciler put in the bridge's FDB, so it can take back those the configuration drops.</summary>
        public readonly HashSet<(ulong Mac, int Vlan)> StaticFdb = [];
    }

    private readonly Lock _gate = new();
    private readonly Dictionary<string, LiveBridge> _bridges = [];
    private IReadOnlyList<string> _errors = [];
    private SwitchConfig? _desired;

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
        lock (_gate) return ApplyLocked(desired);
    }

    /// <summary>
    /// Applies the last configuration again if the last apply left errors (a TAP another bridge held, a
    /// socket in use), so a port that failed comes up once what stood in its way is gone, not at the next
    /// unrelated change. Without errors it brings the static FDB entries up to date alone: ports the
    /// reconciler does not make (netback's vifs) join and leave bridges between applies, and a port that
    /// leaves takes its entries with it. netback calls it on its housekeeping tick. Returns the errors left.
    /// </summary>
    public IReadOnlyList<string> RetryFailed()
    {
        lock (_gate)
        {
            if (_desired is null) return _errors;
            if (_errors.Count > 0) return ApplyLocked(_desired);
            var errors = new List<string>();
            foreach (var want in _desired.Bridges.Values)
                if (_bridges.TryGetValue(want.Name, out var live)) ApplyStaticFdb(live, want, errors);
            if (errors.Count > 0) Publish(errors);
            return errors;
        }
    }

    private List<string> ApplyLocked(SwitchConfig desired)
    {
        var errors = new List<string>();
        _desired = desired;
        // Every removal before any addition, across bridges: a port moving from one bridge to another
        // (a TAP, a bound socket) is released by the old one before the new one opens it.
        foreach (var name in _bridges.Keys.ToArray())
            if (!desired.Bridges.TryGetValue(name, out var want) || want.FdbLimit != _bridges[name].Config.FdbLimit)
                RemoveBridge(name);
        foreach (var want in desired.Bridges.Values)
        {
            if (!_bridges.TryGetValue(want.Name, out var live)) continue;
            RemoveUnwantedPorts(live, want);
            RemoveUnwantedMirrors(live, want);
        }

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
            AddAndConfigurePorts(live, want, errors);
        }
        // Patch ports last: both ends' bridges exist by now.
        foreach (var want in desired.Bridges.Values)
            foreach (var port in want.Ports.Values.Where(p => p.Kind == "patch"))
                AddPatch(desired, want, port, errors);
        foreach (var want in desired.Bridges.Values) AddMirrors(_bridges[want.Name], want, errors);
        // Static entries last: the ports they name, patch ports included, are in place.
        foreach (var want in desired.Bridges.Values) ApplyStaticFdb(_bridges[want.Name], want, errors);
        Publish(errors);
        return errors;
    }

    /// <summary>Makes <paramref name="errors"/> the current ones; an error that stays is said once (a retry every tick must not flood the log), /errors keeps it.</summary>
    private void Publish(List<string> errors)
    {
        var before = _errors.ToHashSet(StringComparer.Ordinal);
        Volatile.Write(ref _errors, errors);
        foreach (var e in errors)
            if (!before.Contains(e)) Log(e);
    }

    /// <summary>
    /// Makes the bridge's static FDB entries those of <paramref name="want"/>, each on its port as the port
    /// is now: a port's removal takes its entries with it (<see cref="Bridge.RemovePort"/>), so a re-created
    /// port, or a vif that joins again, gets them back here. An entry whose port the bridge lacks, or that a
    /// full table cannot take, is an error; the other entries stand. Under the bridge's lock: frames see the
    /// table before or after an entry changes, never between.
    /// </summary>
    private void ApplyStaticFdb(LiveBridge live, BridgeConfig want, List<string> errors)
    {
        var wanted = want.StaticFdb.Select(e => (e.Mac, e.Vlan)).ToHashSet();
        live.Bridge.WithLock(bridge =>
        {
            var fdb = bridge.Fdb;
            foreach (var (mac, vlan) in live.StaticFdb.ToArray())
            {
                if (wanted.Contains((mac, vlan))) continue;
                if (fdb.StaticPort(mac, vlan) >= 0)
                {
                    fdb.Remove(mac, vlan);
                    Log($"fdb {want.Name}: static {MacAddress.Format(mac)} vlan {vlan} removed");
                }
                live.StaticFdb.Remove((mac, vlan));
            }
            foreach (var entry in want.StaticFdb)
            {
                var what = $"static fdb entry {want.Name} {MacAddress.Format(entry.Mac)} vlan {entry.Vlan}";
                if (bridge.FindPort(entry.Port) is not { } port)
                {
                    // Left on the port it named before would send its frames where the configuration no longer says.
                    if (fdb.StaticPort(entry.Mac, entry.Vlan) >= 0) fdb.Remove(entry.Mac, entry.Vlan);
                    errors.Add($"{what}: bridge {want.Name} has no port {entry.Port}; the entry applies when that port joins");
                    continue;
                }
                if (fdb.StaticPort(entry.Mac, entry.Vlan) == port.Index) continue;
                if (!fdb.AddStatic(entry.Mac, entry.Vlan, port.Index))
                {
                    errors.Add($"{what}: the FDB is full ({fdb.Limit} entries); raise fdb-limit or flush learned entries");
                    continue;
                }
                live.StaticFdb.Add((entry.Mac, entry.Vlan));
                Log($"fdb {want.Name}: static {MacAddress.Format(entry.Mac)} vlan {entry.Vlan} on port {entry.Port}");
            }
            return 0;
        });
    }

    private void RemoveUnwantedPorts(LiveBridge live, BridgeConfig want)
    {
        foreach (var (name, (port, config)) in live.Ports.ToArray())
        {
            if (!live.Ports.ContainsKey(name)) continue; // the peer of a patch port removed just before
            if (want.Ports.TryGetValue(name, out var wanted) && wanted.SameIdentity(config)
                && (port is not PatchPort pp || pp.Peer.Bridge is not null)) continue;
            RemovePort(live, name);
        }
    }

    private void AddAndConfigurePorts(LiveBridge live, BridgeConfig want, List<string> errors)
    {
        foreach (var wanted in want.Ports.Values)
        {
            if (live.Ports.TryGetValue(wanted.Name, out var existing))
            {
                try
                {
                    Configure(existing.Port, wanted, want, existing.Config);
                    live.Ports[wanted.Name] = (existing.Port, wanted);
                }
                catch (IOException e) when (existing.Port is TapPort)
                {
                    // The interface refused its MTU (it was moved to another namespace, say): nothing was changed,
                    // and the port stays as it was, since detaching it would close the TAP and destroy the
                    // interface wherever it is now. Tried again, and reported, until the config or interface allows it.
                    errors.Add($"port {want.Name}/{wanted.Name}: {e.Message}");
                }
                catch (Exception e)
                {
                    // Fail closed: a port that cannot have its settings (its VLANs above all) does not stay with
                    // others; it is tried again, and reported again, on every apply until its config is fixed.
                    RemovePort(live, wanted.Name);
                    errors.Add($"port {want.Name}/{wanted.Name}: {e.Message}");
                }
                continue;
            }
            if (wanted.Kind == "patch") continue;
            SwitchPort? port = null;
            try
            {
                port = factory.Create(wanted);
                Configure(port, wanted, want, old: null);
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
            if (peerBridge == want.Name && peerPort == port.Name)
                throw new ArgumentException($"option peer='{peerBridge}/{peerPort}' names the port itself; valid: bridge/port of the other end");
            if (!desired.Bridges.TryGetValue(peerBridge, out var peerWant) || !peerWant.Ports.TryGetValue(peerPort, out var peerConfig) || peerConfig.Kind != "patch")
                throw new ArgumentException($"peer {peerBridge}/{peerPort} is not a configured patch port");
            var (back, backPort) = PortFactory.PatchPeer(peerConfig);
            if (back != want.Name || backPort != port.Name)
                throw new ArgumentException($"peer {peerBridge}/{peerPort} names {back}/{backPort}, not {want.Name}/{port.Name}");
            var peerLive = _bridges[peerBridge];
            if (peerLive.Ports.ContainsKey(peerPort)) RemovePort(peerLive, peerPort);
            var (a, b) = PatchPort.CreatePair(port.Name, peerPort);
            // Both ends or neither: an end left alone would be re-created, and fail again, on every apply.
            try
            {
                Configure(a, port, want, old: null);
                try
                {
                    Configure(b, peerConfig, peerWant, old: null);
                }
                catch (Exception e)
                {
                    throw new ArgumentException($"peer {peerBridge}/{peerPort}: {e.Message}", e);
                }
                live.Bridge.AddPort(a);
                peerLive.Bridge.AddPort(b);
            }
            catch
            {
                a.Dispose(); // detaches it if it was added
                b.Dispose();
                throw;
            }
            live.Ports[port.Name] = (a, port);
            peerLive.Ports[peerPort] = (b, peerConfig);
            Log($"patch {want.Name}/{port.Name} <-> {peerBridge}/{peerPort} added");
        }
        catch (Exception e)
        {
            errors.Add($"port {want.Name}/{port.Name}: {e.Message}");
        }
    }

    /// <summary>
    /// Gives a port the VLAN, MTU, admin state and limits of <paramref name="config"/>. Every value is built
    /// before any is set, so a bad one throws with the port as it was; the caller then leaves it detached.
    /// </summary>
    /// <param name="old">The settings the live port has now; null for a port not attached yet.</param>
    private static void Configure(SwitchPort port, PortConfig config, BridgeConfig bridge, PortConfig? old)
    {
        // Setting a VLAN flushes the port's FDB entries, so only a real change does it.
        var vlan = old is null || old.VlanMode != config.VlanMode || old.Tag != config.Tag || old.Trunks != config.Trunks
            ? config.BuildVlan()
            : null;
        var ingress = old is null || old.Ingress != config.Ingress ? config.Ingress.Build() : port.IngressLimit;
        var egress = old is null || old.Egress != config.Egress ? config.Egress.Build() : port.EgressLimit;
        // The MTU setter checks its range (and a TAP's interface may refuse it); it goes first so that a refusal changes nothing else.
        if (config.Mtu is { } mtu) port.Mtu = mtu;
        else if (port is not VxlanPort) port.Mtu = bridge.Mtu;
        if (vlan is not null) port.Vlan = vlan;
        port.AdminUp = config.AdminUp;
        if (!ReferenceEquals(port.IngressLimit, ingress)) port.IngressLimit = ingress;
        if (!ReferenceEquals(port.EgressLimit, egress)) port.EgressLimit = egress;
    }

    private static void RemoveUnwantedMirrors(LiveBridge live, BridgeConfig want)
    {
        foreach (var (name, (mirror, config, _)) in live.Mirrors.ToArray())
        {
            if (want.Mirrors.TryGetValue(name, out var wanted) && wanted == config) continue;
            mirror.Dispose();
            live.Mirrors.Remove(name);
        }
    }

    private void AddMirrors(LiveBridge live, BridgeConfig want, List<string> errors)
    {
        foreach (var wanted in want.Mirrors.Values)
        {
            if (live.Mirrors.ContainsKey(wanted.Name)) continue;
            try
            {
                // A restarted netback continues the file; add-mirror is what starts a new one.
                var sink = FileCaptureSink.Open(wanted.File, wanted.PcapNg, wanted.Snaplen, Log);
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
        // Ports the configuration does not own (netback's vifs) leave too: their owner keeps them and
        // attaches them to a bridge of the same name if one comes back.
        foreach (var port in live.Bridge.Ports) live.Bridge.RemovePort(port);
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
