using System.CommandLine;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using XenIo.Hypervisor.Domains.Hyperd;
using XenIo.Hypervisor.Store;

namespace XenIo.Cli.Verbs;

/// <summary><c>xenio hyperd</c>: the hypervisor and toolstack daemon in the foreground.</summary>
internal static class HyperdVerb
{
    /// <summary>The run directory every verb uses: <c>--run-dir</c>, else <c>XENIO_RUN_DIR</c>, else /run/xenio as root.</summary>
    public static string RunDirectory(string? option) =>
        option is { Length: > 0 } ? option
        : Environment.GetEnvironmentVariable("XENIO_RUN_DIR") is { Length: > 0 } env ? env
        : Settings.RunDirectory ?? XenstoredOptions.DefaultRunDirectory();

    private static Config.XenioSettings? s_settings;

    /// <summary>
    /// The instance's settings (<c>XENIO_CONFIG</c> or /etc/xenio/xenio.json, then <c>XENIO_*</c>); a file
    /// that cannot be used ends the command with its message, as a bad xl.cfg does.
    /// </summary>
    public static Config.XenioSettings Settings
    {
        get
        {
            if (s_settings is { } s) return s;
            try { return s_settings = Config.XenioSettings.Load(); }
            catch (Config.XenioSettingsException e)
            {
                Console.Error.WriteLine($"xenio: {e.Message}");
                Environment.Exit(2);
                throw;
            }
        }
    }

    public static Option<string> RunDirOption() => new("--run-dir") { Description = "the instance's run directory (default: $XENIO_RUN_DIR, else /run/xenio as root)", Recursive = true };

    public static Command Build()
    {
        var runDir = RunDirOption();
        var stateDir = new Option<string>("--state-dir") { Description = "state directory (default /var/lib/xenio)" };
        var instance = new Option<string>("--instance") { Description = "prefix of kernel-global names (namespaces, cgroups); default XENIO_INSTANCE" };
        var pool = new Option<long>("--pool-mib") { Description = "page pool size in MiB (default: half the host's memory)" };
        var command = new Command("hyperd", "run the hypervisor and toolstack daemon (domains, xenstored, control API) in the foreground")
            { runDir, stateDir, instance, pool };
        command.SetAction(parse =>
        {
            if (!Environment.IsPrivilegedProcess)
            {
                Console.Error.WriteLine("xenio hyperd: needs root (namespaces, cgroups, network namespaces): run it with sudo");
                return 1;
            }
            var builder = Host.CreateApplicationBuilder();
            builder.Services.Configure<HyperdOptions>(o =>
            {
                builder.Configuration.GetSection("Hyperd").Bind(o);
                o.RunDirectory = RunDirectory(parse.GetValue(runDir));
                o.StateDirectory = parse.GetValue(stateDir) is { Length: > 0 } s ? s : Settings.StateDirectory;
                var inst = parse.GetValue(instance) ?? Environment.GetEnvironmentVariable("XENIO_INSTANCE");
                if (inst is { Length: > 0 }) o.Instance = inst;
                if (parse.GetValue(pool) is > 0 and var p) o.PoolMiB = p;
            });
            builder.Services.AddSingleton<HyperdService>();
            builder.Services.AddHostedService(sp => sp.GetRequiredService<HyperdService>());
            try
            {
                builder.Build().Run();
            }
            catch (InvalidOperationException e)
            {
                Console.Error.WriteLine($"xenio hyperd: {e.Message}");
                return 1;
            }
            return 0;
        });
        return command;
    }
}
