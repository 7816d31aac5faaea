using System.Diagnostics;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Domains.Cgroups;
using XenIo.Hypervisor.Domains.Hyperd;
using XenIo.Hypervisor.Domains.Spawn;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;
using XenIo.Hypervisor.Store.Transports;

namespace XenIo.Bench.Hyperd;

/// <summary>
/// <c>xenio create</c>'s cost inside hyperd: domain memory, grant seeding, event channels, xenstore
/// introduction and libxl's layout (one vif), agent spawn, until init runs (NativeAOT agent).
/// The baseline in the note is the agent spawn alone, measured by <c>domain-agent</c>.
/// </summary>
public sealed class DomainCreateBenchmark : ISystemBenchmark
{
    private const int Guests = 20;
    private const string Key = "domain.create_to_init_ms.p50";

    public string Name => "domain-create";

    public async Task RunAsync(BenchContext context, CancellationToken cancellationToken)
    {
        if (Environment.UserName != "root")
        {
            context.Unavailable(Key, "needs root (namespaces, cgroups)");
            return;
        }
        if (await Domains.AotAgent.PublishAsync(context, cancellationToken) is not { } agent)
        {
            context.Unavailable(Key, "NativeAOT publish of the agent failed");
            return;
        }

        var dir = Path.Combine(context.WorkDirectory, "hyperd-create");
        var names = new KernelNames($"benchc{Environment.ProcessId % 100000}");
        using var host = new CoreHost(dir, budgetPages: Guests * 64L * 256);
        await using var listener = new XenstoreSocketListener(new Xenstored(mapper: new XenstoreDomainMapper(host)), XenstoreSocketListener.PathUnder(dir));
        await using var dom0 = await XenstoreClient.ConnectAsync(listener.SocketPath, cancellationToken);
        var manager = new DomainManager(host, dom0, new AgentSpawner(CgroupLayout.Detect(), names),
            new DomainManagerOptions { AgentCommand = [agent], HiddenPaths = [dir], StopTimeoutMs = 100 });
        var times = new List<double>();
        try
        {
            for (var i = 0; i < Guests; i++)
            {
                var sw = Stopwatch.StartNew();
                await manager.CreateAsync(new DomainConfig { Name = $"c{i}", MemoryMiB = 64, Init = ["/bin/sleep", "600"], Vifs = [new VifConfig()] },
                    cancellationToken);
                times.Add(sw.Elapsed.TotalMilliseconds);
            }
            times.Sort();
            context.ReportAtMost(Key, times[times.Count / 2], "ms", 150,
                $"{Guests} domains of 64 MiB with one vif, NativeAOT agent, created one after another; p90 {times[times.Count * 9 / 10]:F1} ms");
        }
        finally
        {
            await manager.DisposeAsync();
            DomainCgroup.RemoveLeftovers(CgroupLayout.Detect(), names);
        }
    }
}
