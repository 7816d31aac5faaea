using System.CommandLine;
using System.Globalization;
using System.Net.Http;
using System.Text;
using System.Text.Json;
using XenIo.Hypervisor.Store.Client;
using XenIo.Net.Frames;
using XenIo.Netback.Switch;
using XenIo.VSwitch.Core;
using XenIo.VSwitch.Management;

namespace XenIo.Cli.Verbs;

/// <summary>
/// <c>xenio switch fdb|fdb-flush|fdb-add|fdb-del</c>: a bridge's forwarding database. <c>fdb</c> and
/// <c>fdb-flush</c> ask netback (flush forgets learned entries only); <c>fdb-add</c> and <c>fdb-del</c>
/// write static entries to <c>/xenio/switch/BR/fdb-static/VLAN/MAC</c> like the other configuration
/// verbs, so they work with netback down and outlive its restarts (Open vSwitch's <c>fdb/add</c> and
/// <c>fdb/del</c>, with our argument order: bridge, then what the entry is).
/// </summary>
internal static partial class SwitchVerb
{
    private static Command Fdb(Option<string> runDir)
    {
        var br = BridgeArg();
        var json = JsonOption();
        var c = new Command("fdb", "show a bridge's forwarding database") { br, json };
        c.SetAction((parse, ct) => Instance.Run(async () =>
        {
            var name = parse.GetValue(br)!;
            CheckName("bridge", name);
            using var doc = await Api(Instance.RunDirectory(parse, runDir), HttpMethod.Get, $"bridges/{name}/fdb", ct).ConfigureAwait(false);
            if (parse.GetValue(json))
            {
                await PrintJson(doc).ConfigureAwait(false);
                return 0;
            }
            Console.Out.Write(FdbTable(doc.RootElement));
            return 0;
        }));
        return c;
    }

    /// <summary>
    /// The text of <c>xenio switch fdb</c> from GET /bridges/BR/fdb: the port column as wide as the widest
    /// name (up to 15 characters), as xl sizes its name column, so the others stay under their headings.
    /// </summary>
    internal static string FdbTable(JsonElement fdb)
    {
        var entries = fdb.GetProperty("entries").EnumerateArray().ToArray();
        var width = entries.Select(e => e.GetProperty("port").GetString()!.Length).Append("port".Length).Max();
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"{"port".PadRight(width)}  VLAN  {"MAC",-17}  Age\n");
        foreach (var e in entries)
            sb.Append(CultureInfo.InvariantCulture, $"{e.GetProperty("port").GetString()!.PadRight(width)}  {e.GetProperty("vlan").GetInt32(),4}  {e.GetProperty("mac").GetString(),-17}  {(e.GetProperty("static").GetBoolean() ? "static" : e.GetProperty("age_seconds").GetInt64().ToString(CultureInfo.InvariantCulture))}\n");
        // MACs behind VXLAN ports, with their remote tunnel endpoint, as `bridge fdb show` lists a vxlan's.
        if (fdb.TryGetProperty("tunnel_entries", out var tunnels))
            foreach (var e in tunnels.EnumerateArray())
                sb.Append(CultureInfo.InvariantCulture, $"{e.GetProperty("mac").GetString()} dev {e.GetProperty("port").GetString()} dst {e.GetProperty("remote").GetString()} vni {e.GetProperty("vni").GetInt32()} age {e.GetProperty("age_seconds").GetInt64()}\n");
        return sb.ToString();
    }

    private static Command FdbFlush(Option<string> runDir)
    {
        var br = BridgeArg();
        var c = new Command("fdb-flush", "forget a bridge's learned MAC addresses (static entries stay; fdb-del removes one)") { br };
        c.SetAction((parse, ct) => Instance.Run(async () =>
        {
            var name = parse.GetValue(br)!;
            CheckName("bridge", name);
            using var doc = await Api(Instance.RunDirectory(parse, runDir), HttpMethod.Post, $"bridges/{name}/fdb/flush", ct).ConfigureAwait(false);
            Console.Out.WriteLine($"flushed {doc.RootElement.GetProperty("flushed").GetInt32()} entries");
            return 0;
        }));
        return c;
    }

    private static Argument<string> MacArg() => new("MAC") { Description = "the station's address, e.g. 02:00:00:00:00:01" };

    private static ulong ParseStaticMac(string text)
    {
        if (!MacAddress.TryParse(text, out var mac, dashes: true))
            throw new CliException($"MAC '{text}' is invalid; valid: six pairs of hex digits separated by ':', e.g. 02:00:00:00:00:01");
        return mac;
    }

    private static Option<int?> VlanOption(string description) => new("--vlan") { Description = description };

    private static int CheckVlan(int vlan) => vlan is >= 0 and <= 4094
        ? vlan
        : throw new CliException($"--vlan {vlan} is invalid; valid: 0-4094 (0: untagged frames on a trunk port; an access port's frames are on its tag)");

    /// <summary>
    /// The bridge's static entries for <paramref name="mac"/> (on <paramref name="vlan"/>, or on any VLAN)
    /// as xenstore spells them, keys relative to the root: one written by hand as <c>010</c> or in upper
    /// case is found too, so it is replaced or deleted rather than left beside the canonical one.
    /// </summary>
    private static async Task<List<(string Key, int Vlan, string Port)>> StaticEntriesAsync(XenstoreClient xs, string bridge, ulong mac, int? vlan, uint tx, CancellationToken ct)
    {
        var found = new List<(string, int, string)>();
        foreach (var (key, port) in await SwitchStore.ReadTreeAsync(xs, Root($"{bridge}/fdb-static"), tx, ct).ConfigureAwait(false))
        {
            var parts = key.Split('/');
            if (parts.Length == 2 && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var v) && (vlan is null || v == vlan)
                && MacAddress.TryParse(parts[1], out var m, dashes: true) && m == mac)
                found.Add(($"{bridge}/fdb-static/{key}", v, port));
        }
        return found;
    }

    /// <summary>Removes a static entry's key and, when it was the last of its VLAN, the VLAN's directory node.</summary>
    private static async Task RemoveStaticKeyAsync(XenstoreClient xs, string key, uint tx, CancellationToken ct)
    {
        await xs.RmAsync(Root(key), tx, ct).ConfigureAwait(false);
        var vlanDirectory = Root(key[..key.LastIndexOf('/')]);
        if ((await xs.DirectoryAsync(vlanDirectory, tx, ct).ConfigureAwait(false)).Length == 0) await xs.RmAsync(vlanDirectory, tx, ct).ConfigureAwait(false);
    }

    private static Command FdbAdd(Option<string> runDir)
    {
        var br = BridgeArg();
        var macArg = MacArg();
        var portArg = new Argument<string>("PORT") { Description = "the port frames to MAC go out of (a configured port or a vif)" };
        var vlanOption = VlanOption("the VLAN the bridge puts the frames on, 0-4094 (default: the one the port's untagged frames are on: an access or native port's tag, 0 on a trunk)");
        var c = new Command("fdb-add", "add a static FDB entry, or move one to another port: frames to MAC go to PORT; it never ages and learning never moves it")
            { br, macArg, portArg, vlanOption };
        c.SetAction((parse, ct) => Instance.Run(async () =>
        {
            var bridge = parse.GetValue(br)!;
            CheckName("bridge", bridge);
            var text = parse.GetValue(macArg)!;
            var mac = ParseStaticMac(text);
            if (SwitchConfigMapping.StaticMacProblem(mac) is { } problem) throw new CliException($"MAC '{text}': {problem}");
            var port = parse.GetValue(portArg)!;
            if (!SwitchConfigMapping.IsValidPortReference(port)) throw new CliException($"port name '{port}' is invalid; valid: 1-15 characters of A-Za-z0-9_.-");
            var given = parse.GetValue(vlanOption) is { } g ? CheckVlan(g) : (int?)null;

            var run = Instance.RunDirectory(parse, runDir);
            await using var xs = await Instance.XenstoreAsync(run, ct).ConfigureAwait(false);
            if (!await Exists(xs, bridge, ct).ConfigureAwait(false)) throw new CliException($"no bridge {bridge} (add it with `xenio switch add-br {bridge}`)");
            var portVlan = await PortVlanAsync(xs, run, bridge, port, ct).ConfigureAwait(false);
            var vlan = given ?? DefaultVlan(port, portVlan);
            if (portVlan.Egress(vlan) == VlanEgress.NotMember)
                throw new CliException($"port {port} does not carry VLAN {vlan} ({Describe(portVlan)}); give --vlan one it carries");

            var key = $"{bridge}/{SwitchConfigMapping.StaticFdbKey(mac, vlan)}";
            var parsed = SwitchConfigMapping.ParseBridge(bridge, new Dictionary<string, string> { [key[(bridge.Length + 1)..]] = port }, Errors(out var errors));
            Validate(parsed, errors);
            await xs.TransactAsync(async tx =>
            {
                foreach (var (old, _, _) in await StaticEntriesAsync(xs, bridge, mac, vlan, tx, ct).ConfigureAwait(false))
                    if (old != key) await RemoveStaticKeyAsync(xs, old, tx, ct).ConfigureAwait(false);
                await xs.WriteAsync(Root(key), port, tx, ct).ConfigureAwait(false);
            }, cancellationToken: ct).ConfigureAwait(false);
            await ReportStaticAppliedAsync(run, bridge, mac, vlan, port, ct).ConfigureAwait(false);
            return 0;
        }));
        return c;
    }

    /// <summary>
    /// The VLANs <paramref name="port"/> of <paramref name="bridge"/> carries: its configuration's, or
    /// (a vif, which is not configured here) the running bridge's; neither is an error listing the bridge's ports.
    /// </summary>
    private static async Task<PortVlan> PortVlanAsync(XenstoreClient xs, string run, string bridge, string port, CancellationToken ct)
    {
        var (config, _) = await SwitchStore.ReadAsync(xs, [], ct).ConfigureAwait(false);
        var configured = config.Bridges.TryGetValue(bridge, out var b) ? b.Ports : new Dictionary<string, PortConfig>();
        if (configured.TryGetValue(port, out var portConfig)) return portConfig.BuildVlan();
        using var doc = await TryApi(run, HttpMethod.Get, "bridges", whenDown: true, ct).ConfigureAwait(false);
        var live = doc?.RootElement.GetProperty("bridges").EnumerateArray().FirstOrDefault(e => e.GetProperty("name").GetString() == bridge);
        var livePorts = live is { ValueKind: JsonValueKind.Object } l ? l.GetProperty("ports").EnumerateArray().ToList() : [];
        if (livePorts.FirstOrDefault(p => p.GetProperty("name").GetString() == port) is { ValueKind: JsonValueKind.Object } found
            && SwitchConfigMapping.TryParseVlanMode(found.GetProperty("vlan_mode").GetString() ?? "", out var mode))
        {
            var tag = (ushort)found.GetProperty("tag").GetInt32();
            var trunks = VlanSet.Parse(found.GetProperty("trunks").GetString() ?? "");
            return mode switch
            {
                VlanMode.Access => PortVlan.Access(tag),
                VlanMode.NativeTagged => PortVlan.NativeTagged(tag, trunks),
                VlanMode.NativeUntagged => PortVlan.NativeUntagged(tag, trunks),
                _ => PortVlan.Trunk(trunks),
            };
        }
        var names = configured.Keys.Concat(livePorts.Select(p => p.GetProperty("name").GetString()!)).Distinct().Order(StringComparer.Ordinal).ToList();
        throw new CliException($"bridge {bridge} has no port {port}; its ports: {(names.Count == 0 ? "none" : string.Join(", ", names))}"
            + (doc is null ? " (netback is not running, so its vifs are not known)" : ""));
    }

    /// <summary>The VLAN a port puts its untagged frames on, which is where a station behind it is found.</summary>
    private static int DefaultVlan(string port, PortVlan vlan) => vlan.ClassifyIngress(false, 0) is >= 0 and var v
        ? v
        : throw new CliException($"port {port} takes no untagged frames ({Describe(vlan)}); say which VLAN with --vlan");

    private static string Describe(PortVlan vlan) => vlan.Mode switch
    {
        VlanMode.Access => $"an access port of VLAN {vlan.Tag}",
        VlanMode.Trunk => $"a trunk of VLANs {vlan.Trunks}",
        _ => $"{SwitchConfigMapping.VlanModeText(vlan.Mode)}, native VLAN {vlan.Tag}, trunks {vlan.Trunks}",
    };

    /// <summary>
    /// Waits briefly for netback to put the entry in the bridge's table, so the next <c>xenio switch fdb</c>
    /// shows it, and says why when it could not (a full table).
    /// </summary>
    private static async Task ReportStaticAppliedAsync(string run, string bridge, ulong mac, int vlan, string port, CancellationToken ct)
    {
        var text = MacAddress.Format(mac);
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (DateTime.UtcNow < deadline)
        {
            using (var doc = await TryApi(run, HttpMethod.Get, $"bridges/{bridge}/fdb", whenDown: true, ct).ConfigureAwait(false))
            {
                if (doc is null)
                {
                    Console.Error.WriteLine($"xenio: netback is not running; the entry applies when it starts");
                    return;
                }
                if (doc.RootElement.GetProperty("entries").EnumerateArray().Any(e => e.GetProperty("mac").GetString() == text
                    && e.GetProperty("vlan").GetInt32() == vlan && e.GetProperty("port").GetString() == port && e.GetProperty("static").GetBoolean()))
                    return;
            }
            using (var errors = await TryApi(run, HttpMethod.Get, "errors", whenDown: true, ct).ConfigureAwait(false))
            {
                var mine = errors?.RootElement.EnumerateArray().Select(e => e.GetString())
                    .FirstOrDefault(e => e is not null && e.StartsWith($"static fdb entry {bridge} {text} vlan {vlan}:", StringComparison.Ordinal));
                if (mine is not null) throw new CliException($"netback could not apply the entry: {mine} (the configuration stays until fdb-del)");
            }
            await Task.Delay(100, ct).ConfigureAwait(false);
        }
        Console.Error.WriteLine($"xenio: netback has not applied the entry yet; see `xenio switch fdb {bridge}`");
    }

    private static Command FdbDel(Option<string> runDir)
    {
        var br = BridgeArg();
        var macArg = MacArg();
        var vlanOption = VlanOption("the entry's VLAN (needed only when MAC is static on several)");
        var c = new Command("fdb-del", "delete a static FDB entry") { br, macArg, vlanOption };
        c.SetAction((parse, ct) => Instance.Run(async () =>
        {
            var bridge = parse.GetValue(br)!;
            CheckName("bridge", bridge);
            var text = parse.GetValue(macArg)!;
            var mac = ParseStaticMac(text);
            var vlan = parse.GetValue(vlanOption) is { } v ? CheckVlan(v) : (int?)null;
            await using var xs = await Instance.XenstoreAsync(Instance.RunDirectory(parse, runDir), ct).ConfigureAwait(false);
            if (!await Exists(xs, bridge, ct).ConfigureAwait(false)) throw new CliException($"no bridge {bridge}");
            await xs.TransactAsync(async tx =>
            {
                var found = await StaticEntriesAsync(xs, bridge, mac, vlan, tx, ct).ConfigureAwait(false);
                var on = vlan is { } n ? $" on VLAN {n}" : "";
                if (found.Count == 0)
                    throw new CliException($"bridge {bridge} has no static entry for {MacAddress.Format(mac)}{on}; see `xenio switch fdb {bridge}`");
                if (found.Select(f => f.Vlan).Distinct().Count() > 1)
                    throw new CliException($"{MacAddress.Format(mac)} is static on VLANs {string.Join(", ", found.Select(f => f.Vlan).Distinct().Order())} of bridge {bridge}; say which with --vlan");
                foreach (var (key, _, _) in found) await RemoveStaticKeyAsync(xs, key, tx, ct).ConfigureAwait(false);
            }, cancellationToken: ct).ConfigureAwait(false);
            return 0;
        }));
        return c;
    }
}
