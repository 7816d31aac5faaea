using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Domains.Cgroups;
using XenIo.Hypervisor.Domains.Hyperd;
using XenIo.Hypervisor.Domains.Spawn;
using XenIo.Hypervisor.Store.Client;
using XenIo.Tests;
using Xunit;

namespace XenIo.Guest.Tests.Hyperd;

/// <summary>
/// The whole hyperd (core, xenstored, toolstack, control API) driven through its socket as the CLI
/// does: the acceptance run with 20 domains, and its refusals.
/// </summary>
[Collection("guests")]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class HyperdServiceTests : IAsyncDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(120);
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "xenio-hyperd-svc-" + Guid.NewGuid().ToString("N")[..10]);
    private readonly string _instance = $"t{Environment.ProcessId % 100000}hs";
    private HyperdService? _service;

    private HyperdService NewService() => new(Options.Create(new HyperdOptions
    {
        RunDirectory = Path.Combine(_dir, "run"),
        StateDirectory = Path.Combine(_dir, "state"),
        Instance = _instance,
        PoolMiB = 20 * 64 + 32,
    }), NullLoggerFactory.Instance);

    [SkippableFact]
    public async Task Twenty_domains_listed_shut_down_through_control_shutdown_and_nothing_left()
    {
        Requires.Root();
        Requires.Tool("unshare");
        _service = NewService();
        await _service.StartAsync(CancellationToken.None);
        var run = Path.Combine(_dir, "run");
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(HyperdClient.SocketUnder(run)) & (UnixFileMode)0x1ff);

        // A second hyperd on the same run directory is refused, naming the cause.
        await using (var second = NewService())
        {
            var e = await Assert.ThrowsAsync<InvalidOperationException>(() => second.StartAsync(CancellationToken.None));
            Assert.Contains("used by another hyperd", e.Message);
        }

        using var client = new HyperdClient(HyperdClient.SocketUnder(run));
        var names = Enumerable.Range(0, 20).Select(i => $"g{i:00}").ToArray();
        foreach (var name in names)
            await client.CreateAsync(new DomainConfig { Name = name, MemoryMiB = 64, Init = ["/bin/sleep", "1000"], Vifs = [new VifConfig()] });

        var dup = await Assert.ThrowsAsync<DomainException>(() => client.CreateAsync(new DomainConfig { Name = "g00", MemoryMiB = 16 }));
        Assert.Equal(409, dup.Status);
        var full = await Assert.ThrowsAsync<DomainException>(() => client.CreateAsync(new DomainConfig { Name = "big", MemoryMiB = 64 }));
        Assert.Equal(507, full.Status);
        Assert.Contains("page pool is exhausted", full.Message);

        var listed = await client.ListAsync();
        Assert.Equal(names, listed.Select(d => d.Name));
        Assert.All(listed, d => Assert.Equal(DomainState.Running, d.State));
        Assert.All(listed, d => Assert.NotNull(d.AgentPid));
        var pids = listed.Select(d => d.AgentPid!.Value).ToArray();

        // Every agent reached xenstore over its own ring before it is asked to go.
        await using var dom0 = await XenstoreClient.ConnectAsync(Path.Combine(run, "xenstored", "socket"));
        var deadline = DateTime.UtcNow + Limit;
        foreach (var d in listed)
            while (await dom0.TryReadAsync($"/local/domain/{d.Domid}/data/agent") != "running")
            {
                Assert.True(DateTime.UtcNow < deadline, $"{d.Name}'s agent never wrote data/agent");
                await Task.Delay(20);
            }

        foreach (var d in listed) await client.ActAsync(d.Name, "shutdown", waitSeconds: 60);
        while ((await client.ListAsync()).Count > 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "domains still listed after their shutdown");
            await Task.Delay(20);
        }

        Assert.All(await dom0.DirectoryAsync("/local/domain"), d => Assert.Equal("0", d));
        Assert.Empty(await dom0.DirectoryAsync("/vm"));
        Assert.Empty(await dom0.DirectoryAsync("/local/domain/0/backend/vif"));
        var kernel = new KernelNames(_instance);
        Assert.Empty(NetnsNames.List(kernel.Prefix));
        Assert.Empty(DomainCgroup.FindLeftovers(CgroupLayout.Detect(), kernel));
        foreach (var pid in pids) Assert.False(Directory.Exists($"/proc/{pid}"), $"agent {pid} still exists");
        Assert.Equal(0, _service.Manager!.Host.Pool.UsedPages);

        await _service.StopAsync(CancellationToken.None);
        Assert.False(File.Exists(HyperdClient.SocketUnder(run)));
        Assert.False(File.Exists(Path.Combine(run, "hyperd.pid")));
    }

    public async ValueTask DisposeAsync()
    {
        if (_service is not null) await _service.DisposeAsync();
        GuestHarness.RemoveInstance(new KernelNames(_instance));
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
