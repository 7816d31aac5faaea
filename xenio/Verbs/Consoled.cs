using System.CommandLine;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using XenIo.Consoled;
using XenIo.Consoled.Daemon;

namespace XenIo.Cli.Verbs;

/// <summary><c>xenio consoled</c>: the console daemon (every domain's console, logged, over telnet) in the foreground.</summary>
internal static class ConsoledVerb
{
    /// <summary>Console logs: <c>--log-dir</c>, else <c>XENIO_LOG_DIR</c>/console, else /var/log/xenio/console as root, else &lt;run&gt;/log/console.</summary>
    public static string LogDirectory(string? option, string run) =>
        option is { Length: > 0 } ? option
        : Environment.GetEnvironmentVariable("XENIO_LOG_DIR") is { Length: > 0 } env ? Path.Combine(env, "console")
        : Environment.IsPrivilegedProcess ? "/var/log/xenio/console" : Path.Combine(run, "log", "console");

    public static Command Build()
    {
        var runDir = HyperdVerb.RunDirOption();
        var logDir = new Option<string>("--log-dir") { Description = "per-domain console logs guest-<name>.log (default: $XENIO_LOG_DIR/console, else /var/log/xenio/console as root)" };
        var portBase = new Option<int>("--port-base") { Description = "first telnet port tried for consoles; 0: any free port (default: console_port_base in xenio.json, else 0)", DefaultValueFactory = _ => HyperdVerb.Settings.ConsolePortBase };
        var directoryPort = new Option<int>("--directory-port") { Description = "port listing every console and its port; 0 (default): any free port, -1: none" };
        var listen = new Option<string>("--listen") { Description = "address the console ports bind (default 127.0.0.1); anything else makes tokens mandatory", DefaultValueFactory = _ => "127.0.0.1" };
        var raw = new Option<bool>("--raw-ports") { Description = "also a raw (no telnet) port per console, for socat and nc" };
        var timestamps = new Option<bool>("--timestamp") { Description = "prefix each log line with the time (xenconsoled --timestamp)" };
        var replaceEscape = new Option<bool>("--replace-escape") { Description = "write ESC as '.' in logs (xenconsoled --replace-escape)" };
        var tokens = new Option<bool>("--always-tokens") { Description = "ask everybody for the console's token, administrators on loopback included" };
        var command = new Command("consoled", "run the console daemon in the foreground: every domain's console logged and served over telnet")
            { runDir, logDir, portBase, directoryPort, listen, raw, timestamps, replaceEscape, tokens };
        command.SetAction(parse =>
        {
            var run = Path.GetFullPath(HyperdVerb.RunDirectory(parse.GetValue(runDir)));
            var daemon = new ConsoledDaemonOptions { RunDirectory = run };
            var options = new ConsoledOptions
            {
                RawPorts = parse.GetValue(raw),
                AlwaysRequireTokens = parse.GetValue(tokens),
            };
            options.Multiplexer.PortBase = parse.GetValue(portBase);
            options.Multiplexer.DirectoryPort = parse.GetValue(directoryPort);
            try
            {
                options.Multiplexer.ListenAddress = ListenAddress.Parse(parse.GetValue(listen) ?? "127.0.0.1");
            }
            catch (FormatException)
            {
                Console.Error.WriteLine($"xenio consoled: --listen {parse.GetValue(listen)}: not an IP address");
                return 2;
            }
            options.Log.Directory = Path.GetFullPath(LogDirectory(parse.GetValue(logDir), run));
            options.Log.Timestamps = parse.GetValue(timestamps);
            options.Log.ReplaceEscape = parse.GetValue(replaceEscape);

            var builder = Host.CreateApplicationBuilder();
            builder.Configuration.GetSection("Consoled:External").Bind(daemon.External);
            builder.Services.AddSingleton(daemon);
            builder.Services.AddSingleton(options);
            builder.Services.AddHostedService<ConsoledDaemon>();
            builder.Build().Run();
            return Environment.ExitCode;
        });
        return command;
    }
}
