using System.CommandLine;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using XenIo.Blkback.Daemon;

namespace XenIo.Cli.Verbs;

/// <summary><c>xenio blkback</c>: the block backend daemon (vbds served from image files) in the foreground.</summary>
internal static class BlkbackVerb
{
    public static Command Build()
    {
        var runDir = new Option<string>("--run-dir") { Description = "run directory: xenstored's socket <run>/xenstored/socket, hyperd's <run>/hypercall.sock, status <run>/blkback.sock" };
        var direct = new Option<bool>("--direct") { Description = "open images with O_DIRECT (bypass the host page cache)" };
        var sectorSize = new Option<int>("--sector-size") { Description = "logical sector size offered to guests: 512 (default) or 4096", DefaultValueFactory = _ => 512 };
        var command = new Command("blkback", "run the block backend daemon in the foreground") { runDir, direct, sectorSize };
        command.SetAction(parse =>
        {
            var builder = Host.CreateApplicationBuilder();
            builder.Services.Configure<BlkbackOptions>(o =>
            {
                builder.Configuration.GetSection("Blkback").Bind(o);
                var r = parse.GetValue(runDir) is { Length: > 0 } given ? given : Environment.GetEnvironmentVariable("XENIO_RUN_DIR");
                if (r is { Length: > 0 }) o.RunDirectory = r;
                if (parse.GetValue(direct)) o.Direct = true;
                o.SectorSize = parse.GetValue(sectorSize);
            });
            builder.Services.AddHostedService<BlkbackService>();
            builder.Build().Run();
            return Environment.ExitCode;
        });
        return command;
    }
}
