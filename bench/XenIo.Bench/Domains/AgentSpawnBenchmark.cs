using System.Diagnostics;
using System.Globalization;
using XenIo.Hypervisor.Domains.Cgroups;
using XenIo.Hypervisor.Domains.Spawn;

namespace XenIo.Bench.Domains;

/// <summary>
/// The guest agent's cost per domain: spawn to a running init (hyperd's share of domain creation,
/// without memory, xenstore or devices) and the private memory of one idle agent plus its launcher,
/// NativeAOT build. The baseline is the same spawn of <c>unshare</c> running <c>/bin/true</c> directly:
/// what namespaces and the launcher cost without the agent.
/// </summary>
public sealed class AgentSpawnBenchmark : ISystemBenchmark
{
    private const int Guests = 20;

    public string Name => "domain-agent";

    public async Task RunAsync(BenchContext context, CancellationToken cancellationToken)
    {
        if (Environment.UserName != "root")
        {
            context.Unavailable("domain.spawn_to_init_ms.p50", "needs root (namespaces, cgroups)");
            return;
        }
        if (await AotAgent.PublishAsync(context, cancellationToken) is not { } agent)
        {
            context.Unavailable("domain.spawn_to_init_ms.p50", "NativeAOT publish of the agent failed");
            return;
        }

        var names = new KernelNames($"bench{Environment.ProcessId}");
        var spawner = new AgentSpawner(CgroupLayout.Detect(), names);
        var times = new List<double>();
        var running = new List<GuestAgent>();
        try
        {
            for (var i = 0; i < Guests; i++)
            {
                var sw = Stopwatch.StartNew();
                running.Add(await spawner.StartAsync(new AgentSpawnRequest
                {
                    Config = new AgentConfig { Name = $"b{i}", Init = ["/bin/sleep", "600"], StopTimeoutMs = 100 },
                    AgentCommand = [agent],
                }, cancellationToken));
                times.Add(sw.Elapsed.TotalMilliseconds);
            }
            times.Sort();
            var rss = running.Select(a => (PrivateKiB(a.AgentPid) + PrivateKiB(a.LauncherPid)) / 1024.0).Order().ToList();
            var baseline = BaselineMs();
            context.Report("domain.spawn_to_init_ms.p50", times[times.Count / 2], "ms",
                $"{Guests} AOT agents; unshare+/bin/true alone p50 {baseline:F1} ms", target: null);
            context.Report("domain.agent_rss_mib", rss[rss.Count / 2], "MiB",
                "private memory (smaps_rollup Private_*) of one idle agent plus its unshare launcher, NativeAOT");
        }
        finally
        {
            foreach (var a in running) await a.DestroyAsync();
            DomainCgroup.RemoveLeftovers(CgroupLayout.Detect(), names);
        }
    }

    private static double BaselineMs()
    {
        var times = new List<double>();
        for (var i = 0; i < Guests; i++)
        {
            var sw = Stopwatch.StartNew();
            using var p = Process.Start("unshare", ["--fork", "--kill-child", "--pid", "--net", "--mount", "--uts", "--ipc", "--", "/bin/true"])!;
            p.WaitForExit();
            times.Add(sw.Elapsed.TotalMilliseconds);
        }
        times.Sort();
        return times[times.Count / 2];
    }

    private static long PrivateKiB(int pid)
    {
        long kib = 0;
        foreach (var line in File.ReadLines($"/proc/{pid}/smaps_rollup"))
            if (line.StartsWith("Private_", StringComparison.Ordinal))
                kib += long.Parse(line.Split(':')[1].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
        return kib;
    }
}
