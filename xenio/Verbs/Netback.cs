using System.CommandLine;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using XenIo.Netback.Daemon;

namespace XenIo.Cli.Verbs;

/// <summary><c>xenio netback</c>: the netback daemon (the switch and, later, vif backends) in the foreground.</summary>
internal static class NetbackVerb
{
    public static Command Build()
    {
        var runDir = new Option<string>("--run-dir") { Description = "run directory: xenstored's socket is <run>/xenstored/socket, the API <run>/netback.sock" };
        var command = new Command("netback", "run the netback daemon (virtual switch) in the foreground") { runDir };
        command.SetAction(parse =>
        {
            var builder = Host.CreateApplicationBuilder();
            builder.Services.Configure<NetbackOptions>(o =>
            {
                builder.Configuration.GetSection("Netback").Bind(o);
                var r = parse.GetValue(runDir) is { Length: > 0 } given ? given : Environment.GetEnvironmentVariable("XENIO_RUN_DIR");
                if (r is { Length: > 0 }) o.RunDirectory = r;
            });
            builder.Services.AddHostedService<NetbackService>();
            builder.Build().Run();
            return Environment.ExitCode;
        });
        return command;
    }
}
