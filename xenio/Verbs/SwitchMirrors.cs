using System.CommandLine;
using System.Globalization;
using System.Net.Http;
using System.Text;
using System.Text.Json;
using XenIo.Hypervisor.Store.Client;
using XenIo.Netback.Switch;
using XenIo.VSwitch.Capture;
using XenIo.VSwitch.Management;

namespace XenIo.Cli.Verbs;

/// <summary>
/// <c>xenio switch add-mirror|del-mirror|list-mirrors</c>: persistent SPAN mirrors of a bridge into a
/// capture file (Open vSwitch's mirrors with tcpdump's file options). Like the other configuration
/// verbs they write <c>/xenio/switch/BR/mirror/NAME</c>, which netback applies and keeps across restarts.
/// </summary>
internal static partial class SwitchVerb
{
    private static Command AddMirror(Option<string> runDir)
    {
        var br = BridgeArg();
        var name = new Argument<string>("NAME") { Description = "mirror name" };
        var file = new Option<string>("-w") { Description = "capture file (pcap, or pcapng with --pcapng); netback writes it", Required = true };
        var ports = new Option<string>("--ports", "-i") { Description = "mirrored ports, comma-separated (all when absent)" };
        var direction = new Option<string>("--direction") { Description = "in|out|both: frames entering the switch from the ports, leaving to them, or both (default both)" };
        var vlans = new Option<string>("--vlans") { Description = "only these VLANs, e.g. 10,20,100-199" };
        var filter = new Option<string>("-f") { Description = "tcpdump filter expression, applied to the frame as seen on the port (VLAN tag included)" };
        var snaplen = new Option<int?>("-s") { Description = $"bytes kept of each frame (1-{PcapWriter.DefaultSnaplen}, default {PcapWriter.DefaultSnaplen})" };
        var pcapng = new Option<bool>("--pcapng") { Description = "write pcapng (one interface per port, direction in each record)" };
        var c = new Command("add-mirror", "mirror a bridge's traffic into a capture file until del-mirror")
            { br, name, file, ports, direction, vlans, filter, snaplen, pcapng };
        c.SetAction((parse, ct) => Instance.Run(async () =>
        {
            var bridge = parse.GetValue(br)!;
            var mirror = parse.GetValue(name)!;
            CheckName("bridge", bridge);
            CheckName("mirror", mirror);
            var path = Path.GetFullPath(parse.GetValue(file)!);
            if (Path.GetDirectoryName(path) is { } dir && !Directory.Exists(dir))
                throw new CliException($"-w {parse.GetValue(file)}: directory {dir} does not exist");
            var keys = new SortedDictionary<string, string>(StringComparer.Ordinal)
            {
                ["file"] = path,
                ["directions"] = parse.GetValue(direction) ?? "both",
                ["snaplen"] = (parse.GetValue(snaplen) ?? PcapWriter.DefaultSnaplen).ToString(CultureInfo.InvariantCulture),
                ["format"] = parse.GetValue(pcapng) ? "pcapng" : "pcap",
            };
            if (parse.GetValue(ports) is { } p) keys["ports"] = p;
            if (parse.GetValue(vlans) is { } v) keys["vlans"] = v;
            if (parse.GetValue(filter) is { } f)
            {
                CheckFilter(f);
                keys["filter"] = f;
            }
            var relative = $"{bridge}/mirror/{mirror}";
            var parsed = SwitchConfigMapping.ParseMirror(relative, mirror, keys, Errors(out var errors));
            Validate(parsed, errors);

            var run = Instance.RunDirectory(parse, runDir);
            await using var xs = await Instance.XenstoreAsync(run, ct).ConfigureAwait(false);
            if (!await Exists(xs, bridge, ct).ConfigureAwait(false)) throw new CliException($"no bridge {bridge} (add it with `xenio switch add-br {bridge}`)");
            if (await Exists(xs, relative, ct).ConfigureAwait(false))
                throw new CliException($"bridge {bridge} has a mirror {mirror} already (remove it with `xenio switch del-mirror {bridge} {mirror}`)");
            await CheckPortsAsync(run, bridge, parsed!.Ports, ct).ConfigureAwait(false);
            var (config, _) = await SwitchStore.ReadAsync(xs, [], ct).ConfigureAwait(false);
            if (config.Bridges.Values.SelectMany(b => b.Mirrors.Values.Select(m => (Bridge: b.Name, Mirror: m))).FirstOrDefault(o => o.Mirror.File == path) is { Mirror: not null } other)
                throw new CliException($"-w {parse.GetValue(file)}: mirror {other.Bridge}/{other.Mirror.Name} writes that file already; give this one a file of its own");
            // add-mirror starts a new capture, as tcpdump -w does; a restarted netback continues the file instead.
            File.Delete(path);
            await SwitchStore.WriteAsync(xs, keys.ToDictionary(kv => $"{relative}/{kv.Key}", kv => kv.Value), replace: relative, cancellationToken: ct).ConfigureAwait(false);
            await ReportStartAsync(run, bridge, mirror, ct).ConfigureAwait(false);
            return 0;
        }));
        return c;
    }

    /// <summary>libpcap compiles the filter here too, so a bad one is refused before it is stored.</summary>
    private static void CheckFilter(string expression)
    {
        try
        {
            using var compiled = BpfFilter.Compile(expression);
        }
        catch (ArgumentException)
        {
            throw new CliException($"-f '{expression}' is not a valid capture filter (tcpdump's syntax, e.g. 'icmp or arp', 'vlan 10 and tcp port 80')");
        }
        catch (InvalidOperationException e)
        {
            throw new CliException($"-f '{expression}': {e.Message}");
        }
    }

    /// <summary>Refuses ports the running bridge does not have; without netback running there is nothing to ask.</summary>
    private static async Task CheckPortsAsync(string run, string bridge, IReadOnlyList<string> ports, CancellationToken ct)
    {
        if (ports.Count == 0) return;
        using var doc = await TryApi(run, HttpMethod.Get, "bridges", whenDown: true, ct).ConfigureAwait(false);
        if (doc is null) return;
        var live = doc.RootElement.GetProperty("bridges").EnumerateArray().FirstOrDefault(b => b.GetProperty("name").GetString() == bridge);
        if (live.ValueKind != JsonValueKind.Object) return;
        var names = live.GetProperty("ports").EnumerateArray().Select(p => p.GetProperty("name").GetString()!).ToList();
        var missing = ports.Where(p => !names.Contains(p)).ToList();
        if (missing.Count > 0)
            throw new CliException($"bridge {bridge} has no port {string.Join(", ", missing)}; its ports: {(names.Count == 0 ? "none" : string.Join(", ", names))}");
    }

    /// <summary>Waits briefly for netback to start the mirror, and says why when it could not (a file it cannot create).</summary>
    private static async Task ReportStartAsync(string run, string bridge, string mirror, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (DateTime.UtcNow < deadline)
        {
            using (var doc = await TryApi(run, HttpMethod.Get, "mirrors", whenDown: true, ct).ConfigureAwait(false))
            {
                if (doc is null)
                {
                    Console.Error.WriteLine($"xenio: netback is not running; mirror {mirror} starts with it");
                    return;
                }
                if (doc.RootElement.GetProperty("mirrors").EnumerateArray().Any(m => m.GetProperty("bridge").GetString() == bridge && m.GetProperty("name").GetString() == mirror))
                    return;
            }
            using (var errors = await TryApi(run, HttpMethod.Get, "errors", whenDown: true, ct).ConfigureAwait(false))
            {
                var mine = errors?.RootElement.EnumerateArray().Select(e => e.GetString()).FirstOrDefault(e => e is not null && e.StartsWith($"mirror {bridge}/{mirror}:", StringComparison.Ordinal));
                if (mine is not null) throw new CliException($"netback could not start the mirror: {mine} (the configuration stays until del-mirror)");
            }
            await Task.Delay(100, ct).ConfigureAwait(false);
        }
        Console.Error.WriteLine($"xenio: netback has not started mirror {mirror} yet; see `xenio switch list-mirrors`");
    }

    private static Command DelMirror(Option<string> runDir)
    {
        var br = BridgeArg();
        var name = new Argument<string>("NAME") { Description = "mirror name" };
        var c = new Command("del-mirror", "stop a mirror and close its capture file") { br, name };
        c.SetAction((parse, ct) => Instance.Run(async () =>
        {
            var bridge = parse.GetValue(br)!;
            var mirror = parse.GetValue(name)!;
            CheckName("bridge", bridge);
            CheckName("mirror", mirror);
            await using var xs = await Instance.XenstoreAsync(Instance.RunDirectory(parse, runDir), ct).ConfigureAwait(false);
            if (!await Exists(xs, bridge, ct).ConfigureAwait(false)) throw new CliException($"no bridge {bridge}");
            if (!await Exists(xs, $"{bridge}/mirror/{mirror}", ct).ConfigureAwait(false)) throw new CliException($"bridge {bridge} has no mirror {mirror}");
            await xs.RmAsync(Root($"{bridge}/mirror/{mirror}"), cancellationToken: ct).ConfigureAwait(false);
            return 0;
        }));
        return c;
    }

    private static Command ListMirrors(Option<string> runDir)
    {
        var br = new Argument<string?>("BR") { Description = "only this bridge's mirrors", Arity = ArgumentArity.ZeroOrOne };
        var json = JsonOption();
        var c = new Command("list-mirrors", "list mirrors: what each captures, where, and how much so far") { br, json };
        c.SetAction((parse, ct) => Instance.Run(async () =>
        {
            var only = parse.GetValue(br);
            if (only is not null) CheckName("bridge", only);
            var run = Instance.RunDirectory(parse, runDir);
            SwitchConfig config;
            await using (var xs = await Instance.XenstoreAsync(run, ct).ConfigureAwait(false))
                (config, _) = await SwitchStore.ReadAsync(xs, [], ct).ConfigureAwait(false);
            if (only is not null && !config.Bridges.ContainsKey(only)) throw new CliException($"no bridge {only}");
            using var live = await TryApi(run, HttpMethod.Get, "mirrors", whenDown: true, ct).ConfigureAwait(false);
            var counters = live?.RootElement.GetProperty("mirrors").EnumerateArray()
                .ToDictionary(m => (m.GetProperty("bridge").GetString()!, m.GetProperty("name").GetString()!),
                    m => (m.GetProperty("captured").GetInt64(), m.GetProperty("filtered_out").GetInt64())) ?? [];
            var rows = config.Bridges.Values.Where(b => only is null || b.Name == only).OrderBy(b => b.Name, StringComparer.Ordinal)
                .SelectMany(b => b.Mirrors.Values.Select(m => (Bridge: b.Name, Mirror: m, Live: counters.TryGetValue((b.Name, m.Name), out var n) ? n : ((long, long)?)null)))
                .ToList();
            if (parse.GetValue(json))
            {
                await using var stdout = Console.OpenStandardOutput();
                await using (var w = new Utf8JsonWriter(stdout, new JsonWriterOptions { Indented = true })) WriteMirrorRows(w, rows);
                await stdout.WriteAsync("\n"u8.ToArray(), ct).ConfigureAwait(false);
                return 0;
            }
            var sb = new StringBuilder($"{"Bridge",-15} {"Mirror",-15} {"Ports",-16} {"Dir",-4} {"VLANs",-8} {"Snap",6} {"Format",-6} {"Captured",9}  File / filter\n");
            foreach (var (bridge, m, n) in rows)
            {
                sb.Append(CultureInfo.InvariantCulture,
                    $"{bridge,-15} {m.Name,-15} {(m.Ports.Count == 0 ? "all" : string.Join(',', m.Ports)),-16} {SwitchConfigMapping.DirectionsText(m.Directions),-4} {m.Vlans ?? "all",-8} {m.Snaplen,6} {(m.PcapNg ? "pcapng" : "pcap"),-6} {(n is { } live2 ? live2.Item1.ToString(CultureInfo.InvariantCulture) : "-"),9}  {m.File}");
                sb.Append(m.Filter is null ? "\n" : $"  [{m.Filter}]\n");
            }
            Console.Out.Write(sb.ToString());
            return 0;
        }));
        return c;
    }

    private static void WriteMirrorRows(Utf8JsonWriter w, List<(string Bridge, MirrorConfig Mirror, (long Captured, long FilteredOut)? Live)> rows)
    {
        w.WriteStartObject();
        w.WriteStartArray("mirrors");
        foreach (var (bridge, m, live) in rows)
        {
            w.WriteStartObject();
            w.WriteString("bridge", bridge);
            MirrorConfigJson.WriteFields(w, m);
            // Active: netback runs it now; a mirror netback could not start (or netback down) is configured only.
            w.WriteBoolean("active", live is not null);
            if (live is { } n)
            {
                w.WriteNumber("captured", n.Captured);
                w.WriteNumber("filtered_out", n.FilteredOut);
            }
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }
}
