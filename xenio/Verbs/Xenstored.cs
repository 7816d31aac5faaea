using System.CommandLine;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using XenIo.Hypervisor.Store;

namespace XenIo.Cli.Verbs;

/// <summary><c>xenio xenstored</c>: the xenstore daemon in the foreground (hyperd hosts the same service).</summary>
internal static class XenstoredVerb
{
    public static Command Build()
    {
        var runDir = new Option<string>("--run-dir") { Description = "run directory; the socket is <run>/xenstored/socket" };
        var stateDir = new Option<string>("--state-dir") { Description = "state directory; /xenio is kept in <state>/xenstore-xenio.json" };
        var command = new Command("xenstored", "run the xenstore daemon in the foreground") { runDir, stateDir };
        command.SetAction(parse =>
        {
            var builder = Host.CreateApplicationBuilder();
            builder.Services.Configure<XenstoredOptions>(o =>
            {
                builder.Configuration.GetSection("Xenstored").Bind(o);
                if (parse.GetValue(runDir) is { Length: > 0 } r) o.RunDirectory = r;
                if (parse.GetValue(stateDir) is { Length: > 0 } s) o.StateDirectory = s;
            });
            builder.Services.AddSingleton<XenstoredService>();
            builder.Services.AddHostedService(sp => sp.GetRequiredService<XenstoredService>());
            builder.Build().Run();
            return 0;
        });
        return command;
    }
}
