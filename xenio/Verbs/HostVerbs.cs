using System.CommandLine;
using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.Json;
using XenIo.Hypervisor.Domains.Hyperd;

namespace XenIo.Cli.Verbs;

/// <summary>More of xl: <c>info</c>, <c>sysrq</c>, <c>rename</c>, <c>domid</c>, <c>domname</c>, <c>uptime</c>.</summary>
internal static class HostVerbs
{
    public static IEnumerable<Command> Build() => [Info(), Sysrq(), Rename(), Domid(), Domname(), Uptime()];

    /// <summary>This command's version (the assembly's informational version).</summary>
    public static string XenioVersion =>
        typeof(HostVerbs).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0]
        ?? typeof(HostVerbs).Assembly.GetName().Version?.ToString() ?? "0";

    private static Command Info()
    {
        var runDir = HyperdVerb.RunDirOption();
        var json = new Option<bool>("--json") { Description = "JSON instead of xl's key : value lines" };
        var command = new Command("info", "the host and its page pool (xl info)") { runDir, json };
        command.SetAction(parse => DomainVerbs.Run(parse.GetValue(runDir), async c =>
        {
            var info = await c.InfoAsync();
            Console.WriteLine(parse.GetValue(json) ? JsonSerializer.Serialize(info, HyperdJson.Default.HostInfo) : InfoText(info, XenioVersion));
        }));
        return command;
    }

    /// <summary>xl info's <c>key : value</c> lines, with xl's key names where one exists.</summary>
    public static string InfoText(HostInfo info, string cliVersion)
    {
        var rows = new List<(string, string)>
        {
            ("host", info.Hostname ?? ""),
            ("release", info.Kernel ?? ""),
            ("nr_cpus", info.Cpus.ToString(CultureInfo.InvariantCulture)),
            ("host_memory", info.HostMemoryMiB.ToString(CultureInfo.InvariantCulture)),
            ("total_memory", info.TotalMemoryMiB.ToString(CultureInfo.InvariantCulture)),
            ("free_memory", info.FreeMemoryMiB.ToString(CultureInfo.InvariantCulture)),
            ("nr_domains", info.Domains.ToString(CultureInfo.InvariantCulture)),
            ("nr_running_domains", info.RunningDomains.ToString(CultureInfo.InvariantCulture)),
            ("hyperd_version", info.Version),
            ("xenio_version", cliVersion),
        };
        var text = new StringBuilder();
        foreach (var (k, v) in rows) text.Append(CultureInfo.InvariantCulture, $"{k,-23}: {v}\n");
        return text.ToString().TrimEnd('\n');
    }

    private static Command Sysrq()
    {
        var runDir = HyperdVerb.RunDirOption();
        var domain = new Argument<string>("DOMAIN") { Description = "name or id" };
        var key = new Argument<string>("KEY") { Description = "the sysrq letter (b reboot, o poweroff, c crash)" };
        var command = new Command("sysrq", "send a sysrq key to a domain (control/sysrq)") { runDir, domain, key };
        command.SetAction(parse => DomainVerbs.Run(parse.GetValue(runDir), c => c.SysrqAsync(parse.GetValue(domain)!, parse.GetValue(key)!)));
        return command;
    }

    private static Command Rename()
    {
        var runDir = HyperdVerb.RunDirOption();
        var domain = new Argument<string>("DOMAIN") { Description = "name or id" };
        var name = new Argument<string>("NEW-NAME") { Description = "the domain's new name" };
        var command = new Command("rename", "rename a domain") { runDir, domain, name };
        command.SetAction(parse => DomainVerbs.Run(parse.GetValue(runDir), c => c.RenameAsync(parse.GetValue(domain)!, parse.GetValue(name)!)));
        return command;
    }

    private static Command Domid()
    {
        var runDir = HyperdVerb.RunDirOption();
        var name = new Argument<string>("DOMAIN-NAME") { Description = "the domain's name" };
        var command = new Command("domid", "print a domain's id") { runDir, name };
        command.SetAction(parse => DomainVerbs.Run(parse.GetValue(runDir), async c =>
        {
            var n = parse.GetValue(name)!;
            var d = (await c.ListAsync()).FirstOrDefault(x => x.Name == n) ?? throw DomainException.NotFound(n);
            Console.WriteLine(d.Domid.ToString(CultureInfo.InvariantCulture));
        }));
        return command;
    }

    private static Command Domname()
    {
        var runDir = HyperdVerb.RunDirOption();
        var id = new Argument<string>("DOMAIN-ID") { Description = "the domain's id" };
        var command = new Command("domname", "print a domain's name") { runDir, id };
        command.SetAction(parse => DomainVerbs.Run(parse.GetValue(runDir), async c =>
        {
            var text = parse.GetValue(id)!;
            if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var domid)) throw new DomainException(400, $"'{text}' is not a domain id");
            var d = (await c.ListAsync()).FirstOrDefault(x => x.Domid == domid) ?? throw DomainException.NotFound(text);
            Console.WriteLine(d.Name);
        }));
        return command;
    }

    private static Command Uptime()
    {
        var runDir = HyperdVerb.RunDirOption();
        var domains = new Argument<string[]>("DOMAIN") { Description = "names or ids (all when none)", Arity = ArgumentArity.ZeroOrMore };
        var command = new Command("uptime", "how long each domain has been running (xl uptime)") { runDir, domains };
        command.SetAction(parse => DomainVerbs.Run(parse.GetValue(runDir), async c =>
        {
            var wanted = parse.GetValue(domains) ?? [];
            var all = await c.ListAsync();
            var shown = wanted.Length == 0 ? all : all.Where(d => wanted.Contains(d.Name) || wanted.Contains(d.Domid.ToString(CultureInfo.InvariantCulture))).ToList();
            foreach (var w in wanted)
                if (!shown.Any(d => d.Name == w || d.Domid.ToString(CultureInfo.InvariantCulture) == w)) throw DomainException.NotFound(w);
            Console.WriteLine(UptimeTable(shown));
        }));
        return command;
    }

    /// <summary>xl uptime's table: Name, ID, then days and h:mm:ss.</summary>
    public static string UptimeTable(IReadOnlyList<DomainInfo> domains)
    {
        var text = new StringBuilder($"{"Name",-33}{"ID",4} Uptime");
        foreach (var d in domains) text.Append('\n').Append(CultureInfo.InvariantCulture, $"{d.Name,-33}{d.Domid,4} {FormatUptime(d.UptimeSeconds)}");
        return text.ToString();
    }

    /// <summary>xl's uptime format: <c>h:mm:ss</c>, preceded by <c>N day(s),</c> past a day.</summary>
    public static string FormatUptime(double seconds)
    {
        var t = TimeSpan.FromSeconds(Math.Max(0, Math.Floor(seconds)));
        var clock = string.Create(CultureInfo.InvariantCulture, $"{(int)t.Hours,2}:{t.Minutes:00}:{t.Seconds:00}");
        return t.Days switch
        {
            0 => clock,
            1 => $"1 day, {clock}",
            _ => string.Create(CultureInfo.InvariantCulture, $"{t.Days} days, {clock}"),
        };
    }
}
