using System.CommandLine;
using System.Globalization;
using System.Net;
using System.Net.Http;
using System.Text;
using System.Text.Json;
using XenIo.Hypervisor.Store.Client;
using XenIo.Netback.Switch;
using XenIo.VSwitch.Management;

namespace XenIo.Cli.Verbs;

/// <summary>
/// <c>xenio switch …</c>: configuration verbs write <c>/xenio/switch</c> in xenstore (netback applies it
/// live); listings ask netback's API. Values are validated by the same mapping netback parses with.
/// </summary>
internal static partial class SwitchVerb
{
    public static Command Build()
    {
        var runDir = Instance.RunDirOption();
        var command = new Command("switch", "configure and inspect the virtual switch (bridges, ports, FDB, counters)") { runDir };
        command.Subcommands.Add(AddBridge(runDir));
        command.Subcommands.Add(DelBridge(runDir));
        command.Subcommands.Add(AddPort(runDir, set: false));
        command.Subcommands.Add(AddPort(runDir, set: true));
        command.Subcommands.Add(DelPort(runDir));
        command.Subcommands.Add(Show(runDir));
        command.Subcommands.Add(Fdb(runDir));
        command.Subcommands.Add(FdbFlush(runDir));
        command.Subcommands.Add(FdbAdd(runDir));
        command.Subcommands.Add(FdbDel(runDir));
        command.Subcommands.Add(Stats(runDir));
        command.Subcommands.Add(AddMirror(runDir));
        command.Subcommands.Add(DelMirror(runDir));
        command.Subcommands.Add(ListMirrors(runDir));
        return command;
    }

    private static readonly string[] Directions = ["ingress", "egress"];

    /// <summary>What <c>--limit</c> may set: a direction and one of the mapping's rate keys.</summary>
    private static readonly string[] LimitKeys = [.. Directions.SelectMany(d => SwitchConfigMapping.RateKeys.Select(k => $"{d}/{k}"))];

    private static Argument<string> BridgeArg() => new("BR") { Description = "bridge name" };

    private static string Root(string relative) => $"{SwitchConfigMapping.Root}/{relative}";

    private static void CheckName(string what, string name)
    {
        if (!SwitchConfigMapping.IsValidName(name)) throw new CliException($"{what} name '{name}' is invalid; valid: 1-15 characters of A-Za-z0-9_-");
    }

    private static async Task<bool> Exists(XenstoreClient xs, string relative, CancellationToken ct) =>
        await xs.TryReadAsync(Root(relative), cancellationToken: ct).ConfigureAwait(false) is not null;

    private static Command AddBridge(Option<string> runDir)
    {
        var br = BridgeArg();
        var mtu = new Option<int?>("--mtu") { Description = "MTU of the bridge's ports (68-65535, default 1500)" };
        var aging = new Option<int?>("--fdb-aging") { Description = "FDB aging in seconds (default 300)" };
        var limit = new Option<int?>("--fdb-limit") { Description = "FDB entries at most (default 8192)" };
        var c = new Command("add-br", "add a bridge") { br, mtu, aging, limit };
        c.SetAction((parse, ct) => Instance.Run(async () =>
        {
            var name = parse.GetValue(br)!;
            CheckName("bridge", name);
            var keys = new Dictionary<string, string>
            {
                ["mtu"] = (parse.GetValue(mtu) ?? BridgeConfig.DefaultMtu).ToString(CultureInfo.InvariantCulture),
                ["fdb-aging"] = (parse.GetValue(aging) ?? BridgeConfig.DefaultFdbAgingSeconds).ToString(CultureInfo.InvariantCulture),
                ["fdb-limit"] = (parse.GetValue(limit) ?? BridgeConfig.DefaultFdbLimit).ToString(CultureInfo.InvariantCulture),
            };
            Validate(SwitchConfigMapping.ParseBridge(name, keys, Errors(out var errors)), errors);
            await using var xs = await Instance.XenstoreAsync(Instance.RunDirectory(parse, runDir), ct).ConfigureAwait(false);
            if (await Exists(xs, name, ct).ConfigureAwait(false)) throw new CliException($"bridge {name} exists already");
            await SwitchStore.WriteAsync(xs, keys.ToDictionary(kv => $"{name}/{kv.Key}", kv => kv.Value), cancellationToken: ct).ConfigureAwait(false);
            return 0;
        }));
        return c;
    }

    private static Command DelBridge(Option<string> runDir)
    {
        var br = BridgeArg();
        var c = new Command("del-br", "delete a bridge and its ports") { br };
        c.SetAction((parse, ct) => Instance.Run(async () =>
        {
            var name = parse.GetValue(br)!;
            CheckName("bridge", name);
            await using var xs = await Instance.XenstoreAsync(Instance.RunDirectory(parse, runDir), ct).ConfigureAwait(false);
            if (!await Exists(xs, name, ct).ConfigureAwait(false)) throw new CliException($"no bridge {name}");
            await xs.RmAsync(Root(name), cancellationToken: ct).ConfigureAwait(false);
            return 0;
        }));
        return c;
    }

    private static List<ConfigError> Errors(out List<ConfigError> errors) => errors = [];

    private static void Validate(object? parsed, List<ConfigError> errors)
    {
        if (errors.Count > 0) throw new CliException(string.Join(Environment.NewLine + "xenio: ", errors.Select(e => e.ToString())));
        if (parsed is null) throw new CliException("invalid configuration");
    }

    private static Command AddPort(Option<string> runDir, bool set)
    {
        var br = BridgeArg();
        var port = new Argument<string>("PORT") { Description = "port name (for tap/internal/uplink ports, the host interface)" };
        var kind = new Option<string>("--kind") { Description = "tap|internal|uplink|stream|vxlan|patch", Required = !set };
        var options = new Option<string[]>("--option", "-o") { Description = "kind option k=v (repeatable; k= removes it with set-port)", AllowMultipleArgumentsPerToken = false };
        var vlanMode = new Option<string>("--vlan-mode") { Description = "access|trunk|native-tagged|native-untagged" };
        var tag = new Option<int?>("--tag") { Description = $"access VLAN or native VLAN ({VSwitch.Core.PortVlan.MinTag}-{VSwitch.Core.PortVlan.MaxTag})" };
        var trunks = new Option<string>("--trunks") { Description = "allowed VLANs, e.g. 10,20,100-199 (all when absent)" };
        var mtu = new Option<int?>("--mtu") { Description = "port MTU (default: the bridge's)" };
        var admin = new Option<string>("--admin") { Description = "up|down" };
        var limits = new Option<string[]>("--limit") { Description = "rate limit DIR/KEY=N, DIR ingress|egress, KEY bytes-per-sec|packets-per-sec|bytes-burst|packets-burst; a burst needs its rate (repeatable; N=0 removes)" };
        var c = new Command(set ? "set-port" : "add-port", set ? "change a port's settings in place" : "add a port to a bridge")
            { br, port, kind, options, vlanMode, tag, trunks, mtu, admin, limits };
        c.SetAction((parse, ct) => Instance.Run(async () =>
        {
            var bridge = parse.GetValue(br)!;
            var name = parse.GetValue(port)!;
            CheckName("bridge", bridge);
            CheckName("port", name);
            await using var xs = await Instance.XenstoreAsync(Instance.RunDirectory(parse, runDir), ct).ConfigureAwait(false);
            if (!await Exists(xs, bridge, ct).ConfigureAwait(false)) throw new CliException($"no bridge {bridge} (add it with `xenio switch add-br {bridge}`)");
            var relative = $"{bridge}/port/{name}";
            var exists = await Exists(xs, relative, ct).ConfigureAwait(false);
            if (set && !exists) throw new CliException($"bridge {bridge} has no port {name}");
            if (!set && exists) throw new CliException($"bridge {bridge} has a port {name} already");
            // Port names are the switch's, not a bridge's (as Open vSwitch's): on two bridges, a TAP or uplink
            // would be opened twice and netback would fail later (TUNSETIFF: device busy).
            if (!set)
                foreach (var other in await xs.DirectoryAsync(SwitchConfigMapping.Root, cancellationToken: ct).ConfigureAwait(false))
                    if (other != bridge && await Exists(xs, $"{other}/port/{name}", ct).ConfigureAwait(false))
                        throw new CliException($"port {name} is already on bridge {other}; del-port {other} {name} first");
            var keys = set ? await SwitchStore.ReadTreeAsync(xs, Root(relative), cancellationToken: ct).ConfigureAwait(false) : new SortedDictionary<string, string>(StringComparer.Ordinal);
            foreach (var k in keys.Where(kv => kv.Value.Length == 0 && kv.Key is "option" or "ingress" or "egress").Select(kv => kv.Key).ToArray()) keys.Remove(k);
            if (!set) keys["vlan-mode"] = "trunk";
            if (parse.GetValue(kind) is { } k1) keys["kind"] = k1;
            foreach (var o in parse.GetValue(options) ?? [])
            {
                var eq = o.IndexOf('=');
                if (eq <= 0 || !o[..eq].All(ch => char.IsAsciiLetterLower(ch) || char.IsAsciiDigit(ch) || ch == '-'))
                    throw new CliException($"--option '{o}' is invalid; valid: key=value with a key of a-z0-9-");
                if (eq == o.Length - 1) keys.Remove($"option/{o[..eq]}");
                else keys[$"option/{o[..eq]}"] = o[(eq + 1)..];
            }
            if (parse.GetValue(vlanMode) is { } vm) keys["vlan-mode"] = vm;
            if (parse.GetValue(tag) is { } t) keys["tag"] = t.ToString(CultureInfo.InvariantCulture);
            if (keys.TryGetValue("vlan-mode", out var mode) && mode == "trunk") keys.Remove("tag");
            if (parse.GetValue(trunks) is { } tr)
            {
                if (tr is "" or "all") keys.Remove("trunks");
                else keys["trunks"] = tr;
            }
            if (parse.GetValue(mtu) is { } m) keys["mtu"] = m.ToString(CultureInfo.InvariantCulture);
            if (parse.GetValue(admin) is { } a) keys["admin"] = a;
            else if (!set) keys["admin"] = "up";
            foreach (var l in parse.GetValue(limits) ?? [])
            {
                // Only rate-limit keys: anything else would write (or, with =0, delete) another of the port's keys.
                var eq = l.IndexOf('=');
                if (eq <= 0 || !LimitKeys.Contains(l[..eq]))
                    throw new CliException($"--limit '{l}' is invalid; valid: KEY=N with KEY one of {string.Join(", ", LimitKeys)}");
                if (l[(eq + 1)..] == "0") keys.Remove(l[..eq]);
                else keys[l[..eq]] = l[(eq + 1)..];
            }
            foreach (var direction in Directions)
                foreach (var (burst, perSecond) in new[] { ("bytes-burst", "bytes-per-sec"), ("packets-burst", "packets-per-sec") })
                    if (keys.TryGetValue($"{direction}/{burst}", out var value) && !keys.ContainsKey($"{direction}/{perSecond}"))
                        throw new CliException($"{direction}/{burst}={value} needs its rate {direction}/{perSecond}; add --limit {direction}/{perSecond}=N, " +
                            $"or remove the burst with --limit {direction}/{burst}=0");
            var parsed = SwitchConfigMapping.ParsePort(Root(relative)[(SwitchConfigMapping.Root.Length + 1)..], name, keys, Errors(out var errors));
            Validate(parsed, errors);
            if (parsed!.Kind == "patch" && !parsed.Options.ContainsKey("peer"))
                throw new CliException("patch ports need --option peer=BRIDGE/PORT (add the other end the same way)");
            await SwitchStore.WriteAsync(xs, keys.ToDictionary(kv => $"{relative}/{kv.Key}", kv => kv.Value), replace: relative, cancellationToken: ct).ConfigureAwait(false);
            return 0;
        }));
        return c;
    }

    private static Command DelPort(Option<string> runDir)
    {
        var br = BridgeArg();
        var port = new Argument<string>("PORT");
        var c = new Command("del-port", "remove a port from a bridge") { br, port };
        c.SetAction((parse, ct) => Instance.Run(async () =>
        {
            var bridge = parse.GetValue(br)!;
            var name = parse.GetValue(port)!;
            CheckName("bridge", bridge);
            CheckName("port", name);
            await using var xs = await Instance.XenstoreAsync(Instance.RunDirectory(parse, runDir), ct).ConfigureAwait(false);
            if (!await Exists(xs, bridge, ct).ConfigureAwait(false)) throw new CliException($"no bridge {bridge}");
            if (!await Exists(xs, $"{bridge}/port/{name}", ct).ConfigureAwait(false)) throw new CliException($"bridge {bridge} has no port {name}");
            await xs.RmAsync(Root($"{bridge}/port/{name}"), cancellationToken: ct).ConfigureAwait(false);
            return 0;
        }));
        return c;
    }

    /// <summary>GETs or POSTs a netback endpoint and returns its JSON; unknown bridges and a stopped daemon become clear errors.</summary>
    internal static async Task<JsonDocument> Api(string runDirectory, HttpMethod method, string path, CancellationToken ct) =>
        (await TryApi(runDirectory, method, path, whenDown: false, ct).ConfigureAwait(false))!;

    /// <summary>As <see cref="Api"/>, but null when netback is not running and <paramref name="whenDown"/> allows it.</summary>
    private static async Task<JsonDocument?> TryApi(string runDirectory, HttpMethod method, string path, bool whenDown, CancellationToken ct)
    {
        using var http = Instance.Netback(runDirectory, out var socket);
        HttpResponseMessage reply;
        try
        {
            reply = await http.SendAsync(new HttpRequestMessage(method, path), ct).ConfigureAwait(false);
        }
        catch (HttpRequestException e)
        {
            if (whenDown) return null;
            throw Instance.NetbackDown(socket, e.InnerException ?? e);
        }
        using (reply)
        {
            var body = await reply.Content.ReadAsByteArrayAsync(ct).ConfigureAwait(false);
            JsonDocument doc;
            try
            {
                doc = JsonDocument.Parse(body);
            }
            catch (JsonException)
            {
                throw new CliException($"netback answered {(int)reply.StatusCode}: {Encoding.UTF8.GetString(body).Trim()}");
            }
            if (reply.StatusCode != HttpStatusCode.OK)
            {
                var message = doc.RootElement.TryGetProperty("error", out var e) ? e.GetString() : reply.StatusCode.ToString();
                doc.Dispose();
                throw new CliException(message ?? "error");
            }
            return doc;
        }
    }

    private static Option<bool> JsonOption() => new("--json") { Description = "print JSON" };

    private static async Task PrintJson(JsonDocument doc)
    {
        await using var stdout = Console.OpenStandardOutput();
        await using (var w = new Utf8JsonWriter(stdout, new JsonWriterOptions { Indented = true })) doc.WriteTo(w);
        await stdout.WriteAsync("\n"u8.ToArray()).ConfigureAwait(false);
    }

    private static Command Show(Option<string> runDir)
    {
        var json = JsonOption();
        var c = new Command("show", "list bridges and their ports") { json };
        c.SetAction((parse, ct) => Instance.Run(async () =>
        {
            using var doc = await Api(Instance.RunDirectory(parse, runDir), HttpMethod.Get, "bridges", ct).ConfigureAwait(false);
            if (parse.GetValue(json))
            {
                await PrintJson(doc).ConfigureAwait(false);
                return 0;
            }
            var sb = new StringBuilder();
            foreach (var b in doc.RootElement.GetProperty("bridges").EnumerateArray())
            {
                sb.Append(CultureInfo.InvariantCulture, $"Bridge {b.GetProperty("name").GetString()} (fdb {b.GetProperty("fdb_entries").GetInt32()}/{b.GetProperty("fdb_limit").GetInt32()}, aging {b.GetProperty("fdb_aging_seconds").GetInt64()}s)\n");
                foreach (var p in b.GetProperty("ports").EnumerateArray())
                {
                    var mode = p.GetProperty("vlan_mode").GetString();
                    var vlan = mode switch
                    {
                        "access" => $"access tag={p.GetProperty("tag").GetInt32()}",
                        "trunk" => $"trunk trunks={p.GetProperty("trunks").GetString()}",
                        _ => $"{mode} tag={p.GetProperty("tag").GetInt32()} trunks={p.GetProperty("trunks").GetString()}",
                    };
                    sb.Append(CultureInfo.InvariantCulture, $"    Port {p.GetProperty("name").GetString()}: {p.GetProperty("kind").GetString()}, {p.GetProperty("admin").GetString()}, {vlan}, mtu {p.GetProperty("mtu").GetInt32()}\n");
                }
            }
            Console.Out.Write(sb.ToString());
            return 0;
        }));
        return c;
    }

    private static Command Stats(Option<string> runDir)
    {
        var br = new Argument<string?>("BR") { Description = "bridge name (all when absent)", Arity = ArgumentArity.ZeroOrOne };
        var json = JsonOption();
        var c = new Command("stats", "per-port counters (OVS-style)") { br, json };
        c.SetAction((parse, ct) => Instance.Run(async () =>
        {
            var name = parse.GetValue(br);
            if (name is not null) CheckName("bridge", name);
            using var doc = await Api(Instance.RunDirectory(parse, runDir), HttpMethod.Get, name is null ? "stats" : $"bridges/{name}", ct).ConfigureAwait(false);
            if (parse.GetValue(json))
            {
                await PrintJson(doc).ConfigureAwait(false);
                return 0;
            }
            var bridges = name is null ? doc.RootElement.GetProperty("bridges").EnumerateArray().ToArray() : [doc.RootElement];
            var sb = new StringBuilder();
            foreach (var b in bridges)
            {
                sb.Append(CultureInfo.InvariantCulture, $"{b.GetProperty("name").GetString()}: flooded {b.GetProperty("flooded").GetInt64()}, filtered {b.GetProperty("filtered").GetInt64()}, fdb {b.GetProperty("fdb_entries").GetInt32()}\n");
                foreach (var p in b.GetProperty("ports").EnumerateArray())
                {
                    sb.Append(CultureInfo.InvariantCulture, $"  port {p.GetProperty("name").GetString()}:\n");
                    sb.Append(CultureInfo.InvariantCulture, $"    rx pkts={p.GetProperty("rx_packets").GetInt64()} bytes={p.GetProperty("rx_bytes").GetInt64()}\n");
                    sb.Append(CultureInfo.InvariantCulture, $"    tx pkts={p.GetProperty("tx_packets").GetInt64()} bytes={p.GetProperty("tx_bytes").GetInt64()}\n");
                    sb.Append(CultureInfo.InvariantCulture, $"    drop={p.GetProperty("drops").GetInt64()}");
                    foreach (var r in p.GetProperty("drops_by_reason").EnumerateObject()) sb.Append(CultureInfo.InvariantCulture, $" {r.Name}={r.Value.GetInt64()}");
                    sb.Append('\n');
                }
            }
            Console.Out.Write(sb.ToString());
            return 0;
        }));
        return c;
    }
}
