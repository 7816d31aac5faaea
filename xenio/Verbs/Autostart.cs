using XenIo.Cli.Config;
using XenIo.Hypervisor.Domains.Hyperd;

namespace XenIo.Cli.Verbs;

/// <summary>
/// xendomains' start for <c>xenio up</c>: every <c>*.cfg</c> in the autostart directory, in name order,
/// created through hyperd. A file that does not parse or a domain hyperd refuses is reported and skipped;
/// the others still start. A domain already running under that name is left alone (up run twice).
/// </summary>
internal static class Autostart
{
    public sealed record Result(IReadOnlyList<string> Started, IReadOnlyList<string> Failed);

    public static async Task<Result> BootAsync(HyperdClient client, string directory, string defaultBridge, TextWriter output, CancellationToken cancellationToken = default)
    {
        var started = new List<string>();
        var failed = new List<string>();
        if (!Directory.Exists(directory)) return new Result(started, failed);
        var running = (await client.ListAsync(cancellationToken).ConfigureAwait(false)).Select(d => d.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var file in Directory.EnumerateFiles(directory, "*.cfg").Order(StringComparer.Ordinal))
        {
            try
            {
                var (config, warnings) = DomainConfigReader.Read(file, null, defaultBridge);
                foreach (var w in warnings) await output.WriteLineAsync($"xenio up: {w}").ConfigureAwait(false);
                if (running.Contains(config.Name))
                {
                    await output.WriteLineAsync($"xenio up: {config.Name} ({file}) is running already").ConfigureAwait(false);
                    continue;
                }
                var info = await client.CreateAsync(config, cancellationToken).ConfigureAwait(false);
                started.Add(info.Name);
                await output.WriteLineAsync($"xenio up: started {info.Name} as {info.Domid} from {file}").ConfigureAwait(false);
            }
            catch (Exception e) when (e is XlConfigException or DomainException)
            {
                failed.Add(file);
                await output.WriteLineAsync($"xenio up: cannot start {file}: {e.Message}").ConfigureAwait(false);
            }
        }
        return new Result(started, failed);
    }
}
