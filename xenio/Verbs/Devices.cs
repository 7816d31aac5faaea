using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using XenIo.Cli.Config;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Domains.Hyperd;

namespace XenIo.Cli.Verbs;

/// <summary>
/// xl's device verbs on a running domain: <c>network-attach|-detach|-list</c> and
/// <c>block-attach|-detach|-list</c>, with xl's argument syntax and listing formats; hyperd does the work.
/// </summary>
internal static class DeviceVerbs
{
    public static IEnumerable<Command> Build() =>
    [
        Attach("network-attach", "attach a vif to a running domain (xl network-attach DOMAIN [mac=…] [bridge=…] [ip=…] …)", "vif"),
        Detach("network-detach", "detach a vif (by devid or MAC)", "vif", "DevId|mac"),
        List("network-list", "list a domain's vifs", "vif"),
        Attach("block-attach", "attach a disk to a running domain (xl block-attach DOMAIN DISK-SPEC…)", "vbd"),
        Detach("block-detach", "detach a disk (by devid or vdev)", "vbd", "DevId|vdev"),
        List("block-list", "list a domain's disks", "vbd"),
    ];

    /// <summary>xl joins the words after the domain with ',' into one spec (<c>xl network-attach web mac=… bridge=…</c>).</summary>
    public static string JoinSpec(IEnumerable<string> words) => string.Join(',', words.Select(w => w.Trim()).Where(w => w.Length > 0));

    /// <summary>A vif spec from network-attach's words; hyperd chooses the devid.</summary>
    public static VifConfig ParseVif(IEnumerable<string> words, Action<string>? warn = null, string? defaultBridge = null) =>
        VifSpec.Parse(JoinSpec(words), -1, warn, defaultBridge);

    public static DiskConfig ParseDisk(IEnumerable<string> words, Action<string>? warn = null) => DiskSpec.Parse(JoinSpec(words), warn);

    private static Command Attach(string name, string description, string kind)
    {
        var runDir = HyperdVerb.RunDirOption();
        var domain = new Argument<string>("DOMAIN") { Description = "name or id" };
        var spec = new Argument<string[]>(kind == "vif" ? "vif-spec" : "disk-spec")
        {
            Description = kind == "vif" ? "key=value settings as in a vif= entry" : "a disk= entry (positional or key=value)",
            Arity = kind == "vif" ? ArgumentArity.ZeroOrMore : ArgumentArity.OneOrMore,
        };
        var command = new Command(name, description) { runDir, domain, spec };
        command.SetAction(parse =>
        {
            var words = parse.GetValue(spec) ?? [];
            VifConfig? vif = null;
            DiskConfig? disk = null;
            try
            {
                if (kind == "vif") vif = ParseVif(words, w => Console.Error.WriteLine($"xenio: warning: {w}"), HyperdVerb.Settings.DefaultBridge);
                else disk = ParseDisk(words, w => Console.Error.WriteLine($"xenio: warning: {w}"));
            }
            catch (FormatException e)
            {
                Console.Error.WriteLine($"xenio: {name}: {e.Message}");
                return 1;
            }
            return DomainVerbs.Run(parse.GetValue(runDir), async c =>
            {
                if (vif is not null) await c.AttachVifAsync(parse.GetValue(domain)!, vif);
                else await c.AttachDiskAsync(parse.GetValue(domain)!, disk!);
            });
        });
        return command;
    }

    private static Command Detach(string name, string description, string kind, string what)
    {
        var runDir = HyperdVerb.RunDirOption();
        var domain = new Argument<string>("DOMAIN") { Description = "name or id" };
        var device = new Argument<string>(what) { Description = what };
        var force = new Option<bool>("-f", "--force") { Description = "remove the nodes at once, without waiting for the backend to close" };
        var timeout = new Option<int?>("--timeout") { Description = "seconds to wait for the backend to close (default 10, as libxl)" };
        var command = new Command(name, description) { runDir, domain, device, force, timeout };
        command.SetAction(parse => DomainVerbs.Run(parse.GetValue(runDir), async c =>
        {
            var forced = await c.DetachAsync(parse.GetValue(domain)!, kind, parse.GetValue(device)!, parse.GetValue(force), parse.GetValue(timeout));
            if (forced && !parse.GetValue(force))
                Console.Error.WriteLine($"xenio: {name}: the backend did not close in time; its nodes were removed anyway");
        }));
        return command;
    }

    private static Command List(string name, string description, string kind)
    {
        var runDir = HyperdVerb.RunDirOption();
        var domains = new Argument<string[]>("DOMAIN") { Description = "names or ids", Arity = ArgumentArity.OneOrMore };
        var json = new Option<bool>("--json") { Description = "JSON instead of a table" };
        var command = new Command(name, description) { runDir, domains, json };
        command.SetAction(parse => DomainVerbs.Run(parse.GetValue(runDir), async c =>
        {
            var all = new List<DeviceInfo>();
            foreach (var d in parse.GetValue(domains)!) all.AddRange(await c.ListDevicesAsync(d, kind));
            Console.WriteLine(parse.GetValue(json)
                ? JsonSerializer.Serialize(all, HyperdJson.Default.ListDeviceInfo)
                : kind == "vif" ? NetworkTable(all) : BlockTable(all));
        }));
        return command;
    }

    /// <summary>xl network-list's table (xl_vif.c main_networklist).</summary>
    public static string NetworkTable(IReadOnlyList<DeviceInfo> vifs)
    {
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"{"Idx",-3} {"BE",-2} {"Mac Addr.",-17} {"handle",-6} {"state",-5} {"evt-ch",-6} {"tx-",5}/{"rx-ring-ref",-5} {"BE-path",-30}");
        foreach (var v in vifs)
            text.Append('\n').Append(CultureInfo.InvariantCulture,
                $"{v.Devid,-3} {v.BackendId,-2} {v.Mac,-17} {v.Devid,6} {v.State,5} {v.EventChannel,6} {v.TxRingRef ?? -1,5}/{v.RxRingRef ?? -1,-11} {v.BackendPath,-30}");
        return text.ToString();
    }

    /// <summary>xl block-list's table (xl_vbd.c main_blocklist); xl prints the frontend domain under "handle".</summary>
    public static string BlockTable(IReadOnlyList<DeviceInfo> disks)
    {
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"{"Vdev",-5} {"BE",-3} {"handle",-6} {"state",-5} {"evt-ch",-6} {"ring-ref",-8} {"BE-path",-30}");
        foreach (var d in disks)
            text.Append('\n').Append(CultureInfo.InvariantCulture,
                $"{d.Devid,-5} {d.BackendId,-3} {d.FrontendId,-6} {d.State,-5} {d.EventChannel,-6} {d.RingRef ?? -1,-8} {d.BackendPath,-30}");
        return text.ToString();
    }
}
