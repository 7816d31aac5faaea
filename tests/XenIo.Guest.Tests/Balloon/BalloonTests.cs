using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Domains.Hyperd;
using XenIo.Hypervisor.Domains.Spawn;
using XenIo.Hypervisor.Memory;
using XenIo.Hypervisor.Store.Client;
using XenIo.Tests;
using Xunit;

namespace XenIo.Guest.Tests.Balloon;

/// <summary>
/// The balloon acceptance: a real guest, <c>mem-set</c> down and up through hyperd's API; the
/// agent's balloon driver gives pages back and takes them again, so the pool's accounting (<c>GET /info</c>,
/// the domain's <c>current_mib</c>), the memfd's allocated size (fstat's blocks) and the cgroup's limit
/// all follow the target.
/// </summary>
[Collection("guests")]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class BalloonTests : IAsyncDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "xenio-balloon-" + Guid.NewGuid().ToString("N")[..10]);
    private readonly string _instance = $"t{Environment.ProcessId % 100000}bl";
    private HyperdService? _service;

    private static async Task UntilAsync(Func<bool> condition, Func<string> what)
    {
        var deadline = DateTime.UtcNow + Limit;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"waited {Limit.TotalSeconds} s for {what()}");
            await Task.Delay(20);
        }
    }

    [SkippableFact]
    public async Task Mem_set_down_and_up_moves_the_pool_the_memfd_and_the_cgroup()
    {
        Requires.Root();
        Requires.Tool("unshare");
        _service = new HyperdService(Options.Create(new HyperdOptions
        {
            RunDirectory = Path.Combine(_dir, "run"),
            StateDirectory = Path.Combine(_dir, "state"),
            Instance = _instance,
            PoolMiB = 256,
        }), NullLoggerFactory.Instance);
        await _service.StartAsync(CancellationToken.None);
        var run = Path.Combine(_dir, "run");
        using var client = new HyperdClient(HyperdClient.SocketUnder(run));
        await client.CreateAsync(new DomainConfig { Name = "bal", MemoryMiB = 128, Init = ["/bin/sleep", "1000"] });
        var domain = _service.Manager!.Find("bal")!;
        var memory = domain.Hosted.Memory;
        var reservation = domain.Hosted.Reservation;
        string Log() { try { return File.ReadAllText(Path.Combine(run, "domains", "bal.log")); } catch (IOException) { return ""; } }

        await using var dom0 = await XenstoreClient.ConnectAsync(Path.Combine(run, "xenstored", "socket"));
        var deadline = DateTime.UtcNow + Limit;
        while (await dom0.TryReadAsync($"/local/domain/{domain.Domid}/data/agent") != "running")
        {
            Assert.True(DateTime.UtcNow < deadline, $"the agent never reached xenstore; log:\n{Log()}");
            await Task.Delay(20);
        }

        // Give every page memory behind it (a read of a memfd hole allocates it), so that what the balloon
        // gives back shows in st_blocks page for page.
        long sum = 0;
        for (uint f = 0; f < memory.FrameCount; f++) sum += memory.Page(f)[0];
        Assert.Equal(128L << 20, memory.AllocatedBytes);
        var before = await client.InfoAsync();
        Assert.Equal((256L, 128L), (before.TotalMemoryMiB, before.FreeMemoryMiB));
        Assert.Equal(128, Assert.Single(await client.ListAsync()).CurrentMiB);

        await client.MemSetAsync("bal", 96);
        Assert.Equal("98304", await dom0.ReadAsync($"/local/domain/{domain.Domid}/memory/target"));
        await UntilAsync(() => reservation.PopulatedPages == 96 * 256, () => $"the balloon to reach 96 MiB (at {reservation.PopulatedPages} pages); log:\n{Log()}");
        var down = await client.InfoAsync();
        Assert.Equal(160, down.FreeMemoryMiB);
        Assert.Equal(96L << 20, memory.AllocatedBytes);
        Assert.Equal((96L, 96L), (Assert.Single(await client.ListAsync()).CurrentMiB, Assert.Single(await client.ListAsync()).MemoryMiB));
        Assert.Equal(96L << 20, MemoryLimit(domain));

        await client.MemSetAsync("bal", 128);
        await UntilAsync(() => reservation.PopulatedPages == 128 * 256, () => $"the balloon to come back to 128 MiB (at {reservation.PopulatedPages} pages); log:\n{Log()}");
        Assert.Equal(128, (await client.InfoAsync()).FreeMemoryMiB);
        Assert.Equal(128L << 20, memory.AllocatedBytes);
        Assert.Equal(128L << 20, MemoryLimit(domain));

        // A target that is not a size is ignored (logged); one beyond the domain's memory means all of it.
        await dom0.WriteAsync($"/local/domain/{domain.Domid}/memory/target", "lots");
        await UntilAsync(() => Log().Contains("memory/target 'lots' is not a size"), () => $"the balloon to log the bad target; log:\n{Log()}");
        await dom0.WriteAsync($"/local/domain/{domain.Domid}/memory/target", "99999999999");
        await client.MemSetAsync("bal", 120);
        await UntilAsync(() => reservation.PopulatedPages == 120 * 256, () => $"the balloon to reach 120 MiB after bad targets; log:\n{Log()}");

        // Beyond maxmem is refused; the domain keeps running.
        Assert.Equal(400, (await Assert.ThrowsAsync<DomainException>(() => client.MemSetAsync("bal", 129))).Status);
        Assert.Equal(DomainState.Running, Assert.Single(await client.ListAsync()).State);
        Assert.True(sum >= 0);

        await client.DestroyAsync("bal");
        Assert.Equal(256, (await client.InfoAsync()).FreeMemoryMiB);
    }

    /// <summary>The domain cgroup's memory limit (cgroup v2 memory.max or v1 memory.limit_in_bytes).</summary>
    private static long MemoryLimit(DomainRecord domain)
    {
        foreach (var dir in domain.Agent!.Cgroup.Directories)
            foreach (var file in new[] { "memory.max", "memory.limit_in_bytes" })
                if (File.Exists(Path.Combine(dir, file)) && long.TryParse(File.ReadAllText(Path.Combine(dir, file)).Trim(), out var v))
                    return v;
        throw new InvalidOperationException("no memory limit file in the domain's cgroup");
    }

    public async ValueTask DisposeAsync()
    {
        if (_service is not null) await _service.DisposeAsync();
        GuestHarness.RemoveInstance(new KernelNames(_instance));
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
