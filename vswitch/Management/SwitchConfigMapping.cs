using System.Globalization;
using XenIo.Net.Frames;
using XenIo.VSwitch.Core;

namespace XenIo.VSwitch.Management;

/// <summary>One rejected xenstore key: its path, its value and what would be valid.</summary>
public sealed record ConfigError(string Key, string Value, string Message)
{
    public override string ToString() => $"{SwitchConfigMapping.Root}/{Key} = '{Value}': {Message}";
}

/// <summary>
/// The pure mapping between <see cref="SwitchConfig"/> and xenstore keys below <see cref="Root"/>
/// (paths relative to it). Layout:
/// <c>&lt;br&gt;/{mtu,fdb-aging,fdb-limit}</c>,
/// <c>&lt;br&gt;/port/&lt;p&gt;/{kind,admin,vlan-mode,tag,trunks,mtu,option/&lt;k&gt;,ingress/…,egress/…}</c> with rate keys
/// <c>{bytes-per-sec,packets-per-sec,bytes-burst,packets-burst}</c>,
/// <c>&lt;br&gt;/mirror/&lt;m&gt;/{file,ports,directions,vlans,filter,snaplen,format}</c>,
/// <c>&lt;br&gt;/fdb-static/&lt;vlan&gt;/&lt;aa-bb-cc-dd-ee-ff&gt; = &lt;port&gt;</c> (the FDB's own key, VLAN then MAC;
/// '-' in the MAC because xenstore paths do not allow ':').
/// Parsing never throws: a bad key drops its port, mirror, static entry or bridge and is reported, the rest stands
/// (the store is dom0-only, but a typo must not take the whole switch down).
/// </summary>
public static class SwitchConfigMapping
{
    public const string Root = "/xenio/switch";
    public static readonly string[] Kinds = ["tap", "internal", "uplink", "stream", "vxlan", "patch"];
    public static readonly string[] VlanModes = ["access", "trunk", "native-tagged", "native-untagged"];
    public static readonly string[] RateKeys = ["bytes-per-sec", "packets-per-sec", "bytes-burst", "packets-burst"];

    /// <summary>Bridge, port and mirror names: interface-name rules (1-15 of A-Za-z0-9_-), which xenstore paths also accept.</summary>
    public static bool IsValidName(string name) =>
        name.Length is >= 1 and <= 15 && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_');

    public static string VlanModeText(VlanMode mode) => mode switch
    {
        VlanMode.Access => "access",
        VlanMode.NativeTagged => "native-tagged",
        VlanMode.NativeUntagged => "native-untagged",
        _ => "trunk",
    };

    public static bool TryParseVlanMode(string text, out VlanMode mode)
    {
        mode = text switch
        {
            "access" => VlanMode.Access,
            "trunk" => VlanMode.Trunk,
            "native-tagged" => VlanMode.NativeTagged,
            "native-untagged" => VlanMode.NativeUntagged,
            _ => (VlanMode)(-1),
        };
        return (int)mode >= 0;
    }

    // ---- model -> keys ----

    public static SortedDictionary<string, string> ToKeys(SwitchConfig config)
    {
        var keys = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var bridge in config.Bridges.Values) AddBridgeKeys(keys, bridge);
        return keys;
    }

    public static void AddBridgeKeys(IDictionary<string, string> keys, BridgeConfig bridge)
    {
        var b = bridge.Name;
        keys[$"{b}/mtu"] = Int(bridge.Mtu);
        keys[$"{b}/fdb-aging"] = Int(bridge.FdbAgingSeconds);
        keys[$"{b}/fdb-limit"] = Int(bridge.FdbLimit);
        foreach (var port in bridge.Ports.Values) AddPortKeys(keys, $"{b}/port/{port.Name}", port);
        foreach (var mirror in bridge.Mirrors.Values) AddMirrorKeys(keys, $"{b}/mirror/{mirror.Name}", mirror);
        foreach (var entry in bridge.StaticFdb) keys[$"{b}/{StaticFdbKey(entry.Mac, entry.Vlan)}"] = entry.Port;
    }

    /// <summary>Where a bridge keeps its static entry for (mac, vlan), relative to the bridge: <c>fdb-static/10/02-00-00-00-00-01</c>.</summary>
    public static string StaticFdbKey(ulong mac, int vlan) => $"fdb-static/{Int(vlan)}/{MacAddress.Format(mac, '-')}";

    /// <summary>
    /// Why <paramref name="mac"/> cannot be a static entry's, or null: frames to a group address (the low
    /// bit of the first byte: multicast, broadcast) are flooded, never looked up, and no station has the zero address.
    /// </summary>
    public static string? StaticMacProblem(ulong mac) =>
        (mac >> 40 & 1) != 0 ? $"{MacAddress.Format(mac)} is a group (multicast or broadcast) address, which the switch floods; valid: a unicast MAC (the low bit of the first byte clear)"
        : mac == 0 ? "00:00:00:00:00:00 is no station's address; valid: a unicast MAC such as 02:00:00:00:00:01"
        : null;

    /// <summary>The keys of one port below <paramref name="prefix"/> (e.g. <c>xenbr0/port/tap0</c>).</summary>
    public static void AddPortKeys(IDictionary<string, string> keys, string prefix, PortConfig port)
    {
        keys[$"{prefix}/kind"] = port.Kind;
        keys[$"{prefix}/admin"] = port.AdminUp ? "up" : "down";
        keys[$"{prefix}/vlan-mode"] = VlanModeText(port.VlanMode);
        if (port.VlanMode != VlanMode.Trunk) keys[$"{prefix}/tag"] = Int(port.Tag);
        if (port.Trunks is not null) keys[$"{prefix}/trunks"] = port.Trunks;
        if (port.Mtu is { } mtu) keys[$"{prefix}/mtu"] = Int(mtu);
        foreach (var (k, v) in port.Options) keys[$"{prefix}/option/{k}"] = v;
        AddRate(keys, $"{prefix}/ingress", port.Ingress);
        AddRate(keys, $"{prefix}/egress", port.Egress);
    }

    private static void AddRate(IDictionary<string, string> keys, string prefix, RateConfig rate)
    {
        if (rate.BytesPerSecond != 0) keys[$"{prefix}/bytes-per-sec"] = Int(rate.BytesPerSecond);
        if (rate.PacketsPerSecond != 0) keys[$"{prefix}/packets-per-sec"] = Int(rate.PacketsPerSecond);
        if (rate.BytesBurst != 0) keys[$"{prefix}/bytes-burst"] = Int(rate.BytesBurst);
        if (rate.PacketsBurst != 0) keys[$"{prefix}/packets-burst"] = Int(rate.PacketsBurst);
    }

    public static void AddMirrorKeys(IDictionary<string, string> keys, string prefix, MirrorConfig mirror)
    {
        keys[$"{prefix}/file"] = mirror.File;
        if (mirror.Ports.Count > 0) keys[$"{prefix}/ports"] = string.Join(',', mirror.Ports);
        keys[$"{prefix}/directions"] = DirectionsText(mirror.Directions);
        if (mirror.Vlans is not null) keys[$"{prefix}/vlans"] = mirror.Vlans;
        if (mirror.Filter is not null) keys[$"{prefix}/filter"] = mirror.Filter;
        keys[$"{prefix}/snaplen"] = Int(mirror.Snaplen);
        keys[$"{prefix}/format"] = mirror.PcapNg ? "pcapng" : "pcap";
    }

    /// <summary>A mirror's directions as its <c>directions</c> key spells them: in, out or both.</summary>
    public static string DirectionsText(CaptureDirection directions) => directions switch
    {
        CaptureDirection.Ingress => "in",
        CaptureDirection.Egress => "out",
        _ => "both",
    };

    /// <summary>
    /// A port a mirror selects, by the name the bridge gives it: interface-name rules (1-15 characters,
    /// no '/', ',' or white space), so netback's vif ports (<c>vif3.0</c>) can be named too.
    /// </summary>
    public static bool IsValidPortReference(string name) =>
        name.Length is >= 1 and <= 15 && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.');

    private static string Int(long v) => v.ToString(CultureInfo.InvariantCulture);

    // ---- keys -> model ----

    /// <summary>Parses every key below <see cref="Root"/> (relative paths; directory nodes may appear with empty values).</summary>
    public static SwitchConfig Parse(IReadOnlyDictionary<string, string> keys, List<ConfigError> errors)
    {
        var byBridge = new SortedDictionary<string, Dictionary<string, string>>(StringComparer.Ordinal);
        foreach (var (key, value) in keys)
        {
            var slash = key.IndexOf('/');
            var bridge = slash < 0 ? key : key[..slash];
            if (!byBridge.TryGetValue(bridge, out var sub)) byBridge[bridge] = sub = [];
            if (slash >= 0) sub[key[(slash + 1)..]] = value;
        }
        var bridges = new SortedDictionary<string, BridgeConfig>(StringComparer.Ordinal);
        foreach (var (name, sub) in byBridge)
            if (ParseBridge(name, sub, errors) is { } b) bridges[name] = b;
        return new SwitchConfig(bridges);
    }

    public static BridgeConfig? ParseBridge(string name, IReadOnlyDictionary<string, string> keys, List<ConfigError> errors)
    {
        if (!IsValidName(name))
        {
            errors.Add(new ConfigError(name, "", "bridge names are 1-15 characters of A-Za-z0-9_-"));
            return null;
        }
        var before = errors.Count;
        var bridge = new BridgeConfig(name);
        var ports = new SortedDictionary<string, Dictionary<string, string>>(StringComparer.Ordinal);
        var mirrors = new SortedDictionary<string, Dictionary<string, string>>(StringComparer.Ordinal);
        var staticFdb = new List<(string Key, string Value)>();
        foreach (var (key, value) in keys)
        {
            var full = $"{name}/{key}";
            switch (key)
            {
                case "mtu":
                    if (Number(full, value, 68, 65535, errors) is { } mtu) bridge = bridge with { Mtu = (int)mtu };
                    break;
                case "fdb-aging":
                    if (Number(full, value, 1, 1_000_000, errors) is { } aging) bridge = bridge with { FdbAgingSeconds = (int)aging };
                    break;
                case "fdb-limit":
                    if (Number(full, value, 1, 1 << 20, errors) is { } limit) bridge = bridge with { FdbLimit = (int)limit };
                    break;
                case "port" or "mirror" or "fdb-static":
                    break;
                default:
                    if (key.StartsWith("fdb-static/", StringComparison.Ordinal)) staticFdb.Add((key, value));
                    else if (!Group(key, value, "port/", ports) && !Group(key, value, "mirror/", mirrors))
                        errors.Add(new ConfigError(full, value, "unknown bridge key; valid: mtu, fdb-aging, fdb-limit, port/<name>/…, mirror/<name>/…, fdb-static/<vlan>/<mac>"));
                    break;
            }
        }
        var bridgeErrors = errors.Count > before;
        var portConfigs = new SortedDictionary<string, PortConfig>(StringComparer.Ordinal);
        foreach (var (p, sub) in ports)
            if (ParsePort($"{name}/port/{p}", p, sub, errors) is { } port) portConfigs[p] = port;
        var mirrorConfigs = new SortedDictionary<string, MirrorConfig>(StringComparer.Ordinal);
        foreach (var (m, sub) in mirrors)
            if (ParseMirror($"{name}/mirror/{m}", m, sub, errors) is { } mirror) mirrorConfigs[m] = mirror;
        var entries = ParseStaticFdb(name, staticFdb, errors);
        return bridgeErrors ? null : bridge with { Ports = portConfigs, Mirrors = mirrorConfigs, StaticFdb = entries };
    }

    private const string StaticFdbLayout = "a static entry is fdb-static/<vlan>/<mac> = <port>, e.g. fdb-static/0/02-00-00-00-00-01 = tap0 (VLAN 0: untagged frames on a trunk port)";

    /// <summary>
    /// A bridge's <c>fdb-static/&lt;vlan&gt;/&lt;mac&gt;</c> keys (relative to the bridge, with their VLAN
    /// directory nodes); a bad one drops that entry alone. Of two keys for one (VLAN, MAC), spelled apart
    /// (<c>10</c> and <c>010</c>, upper and lower case), one stands and the other is an error.
    /// </summary>
    private static List<StaticFdbEntry> ParseStaticFdb(string bridge, List<(string Key, string Value)> keys, List<ConfigError> errors)
    {
        var entries = new List<StaticFdbEntry>();
        var seen = new Dictionary<(int, ulong), (string Key, StaticFdbEntry Entry)>();
        foreach (var (key, value) in keys.OrderBy(k => k.Key, StringComparer.Ordinal))
        {
            var full = $"{bridge}/{key}";
            var parts = key.Split('/');
            if (parts.Length == 2)
            {
                // The VLAN's directory node; a value here is an entry written one level too high.
                if (value.Length > 0) errors.Add(new ConfigError(full, value, $"not an entry; {StaticFdbLayout}"));
                continue;
            }
            if (parts.Length != 3)
            {
                errors.Add(new ConfigError(full, value, $"unknown key; {StaticFdbLayout}"));
                continue;
            }
            if (!long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var vlan) || vlan > 4094)
            {
                errors.Add(new ConfigError(full, value, $"VLAN '{parts[1]}' is invalid; valid: 0-4094 (0: untagged frames on a trunk port; an access port's frames are on its tag)"));
                continue;
            }
            if (!MacAddress.TryParse(parts[2], out var mac, dashes: true) || parts[2].Contains(':'))
            {
                errors.Add(new ConfigError(full, value, $"MAC '{parts[2]}' is invalid; valid: six pairs of hex digits separated by '-', e.g. 02-00-00-00-00-01 (xenstore paths do not allow ':')"));
                continue;
            }
            if (StaticMacProblem(mac) is { } problem)
            {
                errors.Add(new ConfigError(full, value, problem));
                continue;
            }
            if (!IsValidPortReference(value))
            {
                errors.Add(new ConfigError(full, value, "valid: the name of a port of the bridge (1-15 of A-Za-z0-9_.-)"));
                continue;
            }
            var entry = new StaticFdbEntry(mac, (int)vlan, value);
            if (seen.TryGetValue(((int)vlan, mac), out var other))
            {
                // The spelling xenio writes wins; of two others, the first in key order.
                if (key == StaticFdbKey(mac, (int)vlan))
                {
                    errors.Add(new ConfigError($"{bridge}/{other.Key}", other.Entry.Port, $"the same entry as {full}; remove one of them"));
                    entries[entries.IndexOf(other.Entry)] = entry;
                    seen[((int)vlan, mac)] = (key, entry);
                }
                else
                {
                    errors.Add(new ConfigError(full, value, $"the same entry as {bridge}/{other.Key}; remove one of them"));
                }
                continue;
            }
            seen[((int)vlan, mac)] = (key, entry);
            entries.Add(entry);
        }
        return entries;
    }

    private static bool Group(string key, string value, string prefix, SortedDictionary<string, Dictionary<string, string>> groups)
    {
        if (!key.StartsWith(prefix, StringComparison.Ordinal)) return false;
        var rest = key[prefix.Length..];
        var slash = rest.IndexOf('/');
        var name = slash < 0 ? rest : rest[..slash];
        if (!groups.TryGetValue(name, out var sub)) groups[name] = sub = [];
        if (slash >= 0) sub[rest[(slash + 1)..]] = value;
        return true;
    }

    /// <summary>Parses one port's keys (relative to <paramref name="prefix"/>, <c>&lt;bridge&gt;/port/&lt;name&gt;</c>); null and errors when invalid.</summary>
    public static PortConfig? ParsePort(string prefix, string name, IReadOnlyDictionary<string, string> keys, List<ConfigError> errors)
    {
        var before = errors.Count;
        if (!IsValidName(name)) errors.Add(new ConfigError(prefix, "", "port names are 1-15 characters of A-Za-z0-9_-"));
        if (!keys.TryGetValue("kind", out var kind))
        {
            errors.Add(new ConfigError($"{prefix}/kind", "", $"missing; valid: {string.Join('|', Kinds)}"));
            return null;
        }
        if (!Kinds.Contains(kind)) errors.Add(new ConfigError($"{prefix}/kind", kind, $"unknown port kind; valid: {string.Join('|', Kinds)}"));
        var port = new PortConfig(name, kind);
        var options = new SortedDictionary<string, string>(StringComparer.Ordinal);
        var ingress = new RateConfig();
        var egress = new RateConfig();
        foreach (var (key, value) in keys)
        {
            var full = $"{prefix}/{key}";
            switch (key)
            {
                case "kind" or "option" or "ingress" or "egress":
                    break;
                case "admin":
                    if (value is "up" or "down") port = port with { AdminUp = value == "up" };
                    else errors.Add(new ConfigError(full, value, "valid: up|down"));
                    break;
                case "vlan-mode":
                    if (TryParseVlanMode(value, out var mode)) port = port with { VlanMode = mode };
                    else errors.Add(new ConfigError(full, value, $"valid: {string.Join('|', VlanModes)}"));
                    break;
                case "tag":
                    // The same range PortVlan takes: a tag it refused would leave the port unconfigured in netback.
                    if (Number(full, value, PortVlan.MinTag, PortVlan.MaxTag, errors) is { } tag) port = port with { Tag = (ushort)tag };
                    break;
                case "trunks":
                    try
                    {
                        VlanSet.Parse(value);
                        port = port with { Trunks = value };
                    }
                    catch (Exception e) when (e is FormatException or ArgumentException or OverflowException)
                    {
                        errors.Add(new ConfigError(full, value, "valid: VLAN ids 0-4094 as a list of N or N-M, e.g. 10,20,100-199"));
                    }
                    break;
                case "mtu":
                    if (Number(full, value, 68, 65535, errors) is { } mtu) port = port with { Mtu = (int)mtu };
                    break;
                default:
                    if (key.StartsWith("option/", StringComparison.Ordinal) && key.Length > 7 && !key[7..].Contains('/'))
                        options[key[7..]] = value;
                    else if (key.StartsWith("ingress/", StringComparison.Ordinal))
                        ingress = Rate(full, key[8..], value, ingress, errors);
                    else if (key.StartsWith("egress/", StringComparison.Ordinal))
                        egress = Rate(full, key[7..], value, egress, errors);
                    else
                        errors.Add(new ConfigError(full, value, "unknown port key; valid: kind, admin, vlan-mode, tag, trunks, mtu, option/<key>, ingress/<rate>, egress/<rate>"));
                    break;
            }
        }
        // A patch port whose peer is itself would be half built by netback, again on every apply.
        var bridge = prefix.IndexOf('/', StringComparison.Ordinal) is >= 0 and var slash ? prefix[..slash] : prefix;
        if (kind == "patch" && options.TryGetValue("peer", out var peer) && peer == $"{bridge}/{name}")
            errors.Add(new ConfigError($"{prefix}/option/peer", peer, "a patch port's peer is the other end, not the port itself; valid: BRIDGE/PORT of another patch port"));
        CheckBursts(prefix, "ingress", keys, ingress, errors);
        CheckBursts(prefix, "egress", keys, egress, errors);
        if (port.VlanMode != VlanMode.Trunk && !keys.ContainsKey("tag"))
            errors.Add(new ConfigError($"{prefix}/tag", "", $"required with vlan-mode {VlanModeText(port.VlanMode)}; valid: {PortVlan.MinTag}-{PortVlan.MaxTag}"));
        if (errors.Count > before) return null;
        return port with { Options = options, Ingress = ingress, Egress = egress };
    }

    private static RateConfig Rate(string full, string key, string value, RateConfig rate, List<ConfigError> errors)
    {
        if (!RateKeys.Contains(key))
        {
            errors.Add(new ConfigError(full, value, $"unknown rate key; valid: {string.Join(", ", RateKeys)}"));
            return rate;
        }
        if (Number(full, value, 0, long.MaxValue / 2, errors) is not { } n) return rate;
        return key switch
        {
            "bytes-per-sec" => rate with { BytesPerSecond = n },
            "packets-per-sec" => rate with { PacketsPerSecond = n },
            "bytes-burst" => rate with { BytesBurst = n },
            _ => rate with { PacketsBurst = n },
        };
    }

    /// <summary>A burst is extra tokens of its bucket: without the bucket's rate it would be dropped without a word.</summary>
    private static void CheckBursts(string prefix, string direction, IReadOnlyDictionary<string, string> keys, RateConfig rate, List<ConfigError> errors)
    {
        foreach (var (burst, perSecond, hasBurst, hasRate) in new[]
        {
            ("bytes-burst", "bytes-per-sec", rate.BytesBurst != 0, rate.BytesPerSecond != 0),
            ("packets-burst", "packets-per-sec", rate.PacketsBurst != 0, rate.PacketsPerSecond != 0),
        })
        {
            if (hasBurst && !hasRate)
                errors.Add(new ConfigError($"{prefix}/{direction}/{burst}", keys[$"{direction}/{burst}"],
                    $"a burst without its rate limits nothing; valid: set {direction}/{perSecond} too, or remove the burst"));
        }
    }

    public static MirrorConfig? ParseMirror(string prefix, string name, IReadOnlyDictionary<string, string> keys, List<ConfigError> errors)
    {
        var before = errors.Count;
        if (!IsValidName(name)) errors.Add(new ConfigError(prefix, "", "mirror names are 1-15 characters of A-Za-z0-9_-"));
        if (!keys.TryGetValue("file", out var file) || !Path.IsPathFullyQualified(file))
        {
            errors.Add(new ConfigError($"{prefix}/file", file ?? "", "required: an absolute path for the capture file"));
            return null;
        }
        var mirror = new MirrorConfig(name, file);
        foreach (var (key, value) in keys)
        {
            var full = $"{prefix}/{key}";
            switch (key)
            {
                case "file":
                    break;
                case "ports":
                    var ports = value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                    if (ports.Length > 0 && ports.All(IsValidPortReference)) mirror = mirror with { Ports = ports };
                    else errors.Add(new ConfigError(full, value, "valid: comma-separated port names (1-15 of A-Za-z0-9_.-)"));
                    break;
                case "directions":
                    if (value is "in" or "out" or "both")
                        mirror = mirror with { Directions = value == "in" ? CaptureDirection.Ingress : value == "out" ? CaptureDirection.Egress : CaptureDirection.Ingress | CaptureDirection.Egress };
                    else errors.Add(new ConfigError(full, value, "valid: in|out|both"));
                    break;
                case "vlans":
                    try
                    {
                        VlanSet.Parse(value);
                        mirror = mirror with { Vlans = value };
                    }
                    catch (Exception e) when (e is FormatException or ArgumentException or OverflowException)
                    {
                        errors.Add(new ConfigError(full, value, "valid: VLAN ids 0-4094 as a list of N or N-M"));
                    }
                    break;
                case "filter":
                    mirror = mirror with { Filter = value };
                    break;
                case "snaplen":
                    if (Number(full, value, 1, Capture.PcapWriter.DefaultSnaplen, errors) is { } s) mirror = mirror with { Snaplen = (int)s };
                    break;
                case "format":
                    if (value is "pcap" or "pcapng") mirror = mirror with { PcapNg = value == "pcapng" };
                    else errors.Add(new ConfigError(full, value, "valid: pcap|pcapng"));
                    break;
                default:
                    errors.Add(new ConfigError(full, value, "unknown mirror key; valid: file, ports, directions, vlans, filter, snaplen, format"));
                    break;
            }
        }
        return errors.Count > before ? null : mirror;
    }

    private static long? Number(string key, string value, long min, long max, List<ConfigError> errors)
    {
        if (long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n >= min && n <= max) return n;
        errors.Add(new ConfigError(key, value, $"valid: an integer {min}-{max}"));
        return null;
    }
}
