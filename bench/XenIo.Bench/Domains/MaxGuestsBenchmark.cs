using System.Diagnostics;
using System.Globalization;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Domains.Cgroups;
using XenIo.Hypervisor.Domains.Hyperd;
using XenIo.Hypervisor.Domains.Spawn;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;
using XenIo.Hypervisor.Store.Transports;

namespace XenIo.Bench.Domains;

/// <summary>
/// <c>domain.max_guests</c>: how many guests (NativeAOT agent, 16 MiB, one vif, init a sleeping
/// process) run at once on this host, created one after another through hyperd's toolstack until
/// creation fails, the guests have used half of the machine's memory (growth of MemTotal − MemAvailable
/// since the start, so what other users of a shared machine hold does not count), or 200 are running.
/// The page pool is half the host's memory, as hyperd's default. Everything is destroyed afterwards.
/// </summary>
public sealed class MaxGuestsBenchmark : ISystemBenchmark
{
    private const int Cap = 200;
    private const long GuestMiB = 16;
    private const string Key = "domain.max_guests";

    public string Name => "domain-max";

    public async Task RunAsync(BenchContext context, CancellationToken cancellationToken)
    {
        if (Environment.UserName != "root")
        {
            context.Unavailable(Key, "needs root (namespaces, cgroups)");
            return;
        }
        if (await AotAgent.PublishAsync(context, cancellationToken) is not { } agent)
        {
            context.Unavailable(Key, "NativeAOT publish of the agent failed");
            return;
        }

        var (totalKiB, availableAtStartKiB) = MemInfo();
        long usedAtStartKiB = totalKiB - availableAtStartKiB;
        var dir = Path.Combine(context.WorkDirectory, "hyperd-max");
        var names = new KernelNames($"benchm{Environment.ProcessId % 100000}");
        using var host = new CoreHost(dir, budgetPages: totalKiB / 2 / 4);
        await using var listener = new XenstoreSocketListener(new Xenstored(mapper: new XenstoreDomainMapper(host)), XenstoreSocketListener.PathUnder(dir));
        await using var dom0 = await XenstoreClient.ConnectAsync(listener.SocketPath, cancellationToken);
        var manager = new DomainManager(host, dom0, new AgentSpawner(CgroupLayout.Detect(), names),
            new DomainManagerOptions { AgentCommand = [agent], HiddenPaths = [dir], StopTimeoutMs = 100 });
        int running = 0;
        string stop = $"the cap of {Cap}";
        var sw = Stopwatch.StartNew();
        try
        {
            while (running < Cap)
            {
                long grownKiB = totalKiB - MemInfo().AvailableKiB - usedAtStartKiB;
                if (grownKiB >= totalKiB / 2)
                {
                    stop = "half of the machine's memory";
                    break;
                }
                try
                {
                    await manager.CreateAsync(new DomainConfig
                    {
                        Name = $"m{running}", MemoryMiB = GuestMiB, Init = ["/bin/sleep", "3600"], Vifs = [new VifConfig()],
                    }, cancellationToken);
                }
                catch (DomainException e)
                {
                    stop = $"creation failing ({e.Message})";
                    break;
                }
                running++;
            }
            var createSeconds = sw.Elapsed.TotalSeconds;
            // Every guest is really up: its agent is running and its init was started.
            var alive = manager.Domains.Count(d => d.State == DomainState.Running && d.Agent is { AgentPid: > 0 } a && Directory.Exists($"/proc/{a.AgentPid}"));
            long perGuestKiB = running > 0 ? (totalKiB - MemInfo().AvailableKiB - usedAtStartKiB) / running : 0;
            context.Report(Key, alive, "guests",
                string.Create(CultureInfo.InvariantCulture,
                    $"stopped at {stop}; {GuestMiB} MiB guests with one vif, NativeAOT agent; {perGuestKiB / 1024.0:F1} MiB of host memory per guest; created in {createSeconds:F0} s"),
                target: Cap);
        }
        finally
        {
            await manager.DisposeAsync();
            DomainCgroup.RemoveLeftovers(CgroupLayout.Detect(), names);
            foreach (var ns in NetnsNames.List(names.Prefix)) NetnsNames.Detach(ns);
        }
    }

    private static (long TotalKiB, long AvailableKiB) MemInfo()
    {
        long total = 0, available = 0;
        foreach (var line in File.ReadLines("/proc/meminfo"))
        {
            if (line.StartsWith("MemTotal:", StringComparison.Ordinal)) total = Field(line);
            else if (line.StartsWith("MemAvailable:", StringComparison.Ordinal)) available = Field(line);
        }
        return (total, available);
    }

    private static long Field(string line) => long.Parse(line.Split(':')[1].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
}
