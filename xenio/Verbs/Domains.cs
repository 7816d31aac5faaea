using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using XenIo.Cli.Config;
using XenIo.Hypervisor.Domains.Hyperd;

namespace XenIo.Cli.Verbs;

/// <summary>xl's domain verbs: create, list, destroy, shutdown, reboot, pause, unpause, mem-set; clients of hyperd's control API.</summary>
internal static class DomainVerbs
{
    public static IEnumerable<Command> Build() =>
    [
        Create(), List(), Simple("destroy", "destroy a domain at once", (c, d) => c.DestroyAsync(d)),
        Shutdown("shutdown", "ask a domain to power off (control/shutdown)"),
        Shutdown("reboot", "ask a domain to reboot (control/shutdown)"),
        Simple("pause", "freeze every process of a domain", (c, d) => c.ActAsync(d, "pause")),
        Simple("unpause", "thaw a paused domain", (c, d) => c.ActAsync(d, "unpause")),
        MemSet(),
    ];

    internal static int Run(string? runDir, Func<HyperdClient, Task> action)
    {
        using var client = new HyperdClient(HyperdClient.SocketUnder(HyperdVerb.RunDirectory(runDir)));
        try
        {
            action(client).GetAwaiter().GetResult();
            return 0;
        }
        catch (DomainException e)
        {
            Console.Error.WriteLine($"xenio: {e.Message}");
            return 1;
        }
    }

    private static Command Create()
    {
        var runDir = HyperdVerb.RunDirOption();
        var file = new Argument<string>("FILE") { Description = "xl.cfg file" };
        var overrides = new Argument<string[]>("key=value") { Description = "settings that override the file's", Arity = ArgumentArity.ZeroOrMore };
        var command = new Command("create", "create a domain from an xl.cfg file") { runDir, file, overrides };
        command.SetAction(parse =>
        {
            Hypervisor.Domains.DomainConfig config;
            try
            {
                var (c, warnings) = DomainConfigReader.Read(parse.GetValue(file)!, parse.GetValue(overrides) ?? [], HyperdVerb.Settings.DefaultBridge);
                foreach (var w in warnings) Console.Error.WriteLine(w);
                config = c;
            }
            catch (XlConfigException e)
            {
                Console.Error.WriteLine(e.Message);
                return 1;
            }
            return Run(parse.GetValue(runDir), async client =>
            {
                var info = await client.CreateAsync(config);
                Console.WriteLine($"Domain {info.Name} created as {info.Domid}");
            });
        });
        return command;
    }

    private static Command List()
    {
        var runDir = HyperdVerb.RunDirOption();
        var json = new Option<bool>("--json") { Description = "JSON instead of a table" };
        var command = new Command("list", "list the domains (xl list)") { runDir, json };
        command.SetAction(parse => Run(parse.GetValue(runDir), async client =>
        {
            var domains = await client.ListAsync();
            Console.WriteLine(parse.GetValue(json)
                ? JsonSerializer.Serialize(domains, HyperdJson.Default.ListDomainInfo)
                : Table(domains));
        }));
        return command;
    }

    /// <summary>xl list's table: Name ID Mem VCPUs State Time(s), plus the console's TCP port (<c>-</c> when none is published).</summary>
    public static string Table(IReadOnlyList<DomainInfo> domains)
    {
        var width = Math.Max(40, domains.Select(d => d.Name.Length + 1).DefaultIfEmpty(0).Max());
        var lines = new List<string> { $"{"Name".PadRight(width)}{"ID",5}{"Mem",6}{"VCPUs",6}{"State",11}{"Time(s)",11}{"Console",8}" };
        foreach (var d in domains)
            lines.Add($"{d.Name.PadRight(width)}{d.Domid,5}{d.MemoryMiB,6}{d.Vcpus,6}{StateFlags(d.State),11}" +
                      $"{d.TimeSeconds.ToString("0.0", CultureInfo.InvariantCulture),11}" +
                      $"{(d.ConsolePort is { } p ? p.ToString(CultureInfo.InvariantCulture) : "-"),8}");
        return string.Join('\n', lines);
    }

    /// <summary>xl's six state columns r b p s c d.</summary>
    public static string StateFlags(DomainState state) => state switch
    {
        DomainState.Running => "r-----",
        DomainState.Paused => "--p---",
        DomainState.Shutdown => "---s--",
        DomainState.Crashed => "----c-",
        DomainState.Dying => "-----d",
        _ => "------",
    };

    private static Command Simple(string name, string description, Func<HyperdClient, string, Task> action)
    {
        var runDir = HyperdVerb.RunDirOption();
        var domain = new Argument<string>("DOMAIN") { Description = "name or id" };
        var command = new Command(name, description) { runDir, domain };
        command.SetAction(parse => Run(parse.GetValue(runDir), c => action(c, parse.GetValue(domain)!)));
        return command;
    }

    private static Command Shutdown(string name, string description)
    {
        var runDir = HyperdVerb.RunDirOption();
        var domain = new Argument<string>("DOMAIN") { Description = "name or id" };
        var wait = new Option<bool>("-w", "--wait") { Description = "wait for the domain to go (up to 5 minutes)" };
        var command = new Command(name, description) { runDir, domain, wait };
        command.SetAction(parse => Run(parse.GetValue(runDir),
            c => c.ActAsync(parse.GetValue(domain)!, name, parse.GetValue(wait) ? 300 : null)));
        return command;
    }

    private static Command MemSet()
    {
        var runDir = HyperdVerb.RunDirOption();
        var domain = new Argument<string>("DOMAIN") { Description = "name or id" };
        var memory = new Argument<string>("MEM") { Description = "new target: MiB, or with a suffix k, m, g" };
        var command = new Command("mem-set", "set a domain's memory target (memory/target)") { runDir, domain, memory };
        command.SetAction(parse =>
        {
            if (!TryMiB(parse.GetValue(memory)!, out var mib))
            {
                Console.Error.WriteLine($"xenio: bad memory size '{parse.GetValue(memory)}': use MiB or a number with k, m or g");
                return 1;
            }
            return Run(parse.GetValue(runDir), c => c.MemSetAsync(parse.GetValue(domain)!, mib));
        });
        return command;
    }

    /// <summary>xl's sizes: a plain number is MiB; k, m, g suffixes.</summary>
    public static bool TryMiB(string text, out long mib)
    {
        mib = 0;
        if (text.Length == 0) return false;
        long scaleKiB = char.ToLowerInvariant(text[^1]) switch { 'k' => 1, 'm' => 1024, 'g' => 1024 * 1024, _ => 0 };
        var digits = scaleKiB == 0 ? text : text[..^1];
        if (scaleKiB == 0) scaleKiB = 1024;
        if (!long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n > 1L << 40) return false;
        mib = n * scaleKiB / 1024;
        return mib > 0;
    }
}
