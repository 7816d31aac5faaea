using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Domains.Cgroups;
using XenIo.Hypervisor.Domains.Hyperd;
using XenIo.Hypervisor.Domains.Spawn;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;
using XenIo.Hypervisor.Store.Transports;
using XenIo.Tests;
using Xunit;

namespace XenIo.Guest.Tests.Hyperd;

/// <summary>
/// hyperd's toolstack with real agents: domains created from configs, their agents reaching xenstore
/// over their own rings, shutdown through control/shutdown, crashes, lifecycle actions, and nothing
/// left behind.
/// </summary>
[Collection("guests")]
public sealed class HyperdDomainTests : IAsyncDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    private readonly string _dir = Path.Combine(Path.GetTempPath(), "xenio-hyperd-" + Guid.NewGuid().ToString("N")[..10]);
    private readonly KernelNames _names = GuestHarness.Names("hd");
    private readonly CgroupLayout _layout = CgroupLayout.Detect();
    private CoreHost? _host;
    private Xenstored? _daemon;
    private XenstoreSocketListener? _listener;
    private XenstoreClient? _dom0;
    private DomainManager? _manager;

    private async Task<(DomainManager Manager, XenstoreClient Dom0)> StartAsync()
    {
        Requires.Root();
        Requires.Tool("unshare");
        Requires.Tool("ip");
        Directory.CreateDirectory(_dir);
        _host = new CoreHost(_dir, budgetPages: 1L << 20);
        _daemon = new Xenstored(mapper: new XenstoreDomainMapper(_host));
        _listener = new XenstoreSocketListener(_daemon, XenstoreSocketListener.PathUnder(_dir));
        _dom0 = await XenstoreClient.ConnectAsync(_listener.SocketPath);
        _manager = new DomainManager(_host, _dom0, new AgentSpawner(_layout, _names), new DomainManagerOptions
        {
            AgentCommand = GuestHarness.AgentCommand,
            HiddenPaths = [_dir],
            LogDirectory = _dir,
            StopTimeoutMs = 2000,
        });
        return (_manager, _dom0);
    }

    private static DomainConfig Config(string name, LifecycleAction onPoweroff = LifecycleAction.Destroy,
        LifecycleAction onReboot = LifecycleAction.Restart, LifecycleAction onCrash = LifecycleAction.Destroy) => new()
    {
        Name = name,
        MemoryMiB = 256,
        Init = ["/bin/sleep", "1000"],
        OnPoweroff = onPoweroff,
        OnReboot = onReboot,
        OnCrash = onCrash,
    };

    private static async Task UntilAsync(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTime.UtcNow + Limit;
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"waited {Limit.TotalSeconds} s for {what}");
            await Task.Delay(20);
        }
    }

    /// <summary>The agent announces itself over its own ring: proof it mapped its memory and its store port works.</summary>
    private async Task AgentOnRingAsync(DomainRecord d) =>
        await UntilAsync(async () => await _dom0!.TryReadAsync($"/local/domain/{d.Domid}/data/agent") == "running",
            $"{d.Name}'s agent on its xenstore ring; log:\n{Log(d.Name)}");

    private string Log(string name)
    {
        try { return File.ReadAllText(Path.Combine(_dir, name + ".log")); }
        catch (IOException) { return ""; }
    }

    private async Task AssertNothingLeftAsync(params int[] agentPids)
    {
        Assert.Empty(_manager!.List());
        Assert.Equal(0, _host!.Pool.UsedPages);
        Assert.Empty(NetnsNames.List(_names.Prefix));
        Assert.Empty(DomainCgroup.FindLeftovers(_layout, _names));
        Assert.All(await _dom0!.DirectoryAsync("/local/domain"), d => Assert.Equal("0", d));
        Assert.Empty(await _dom0.DirectoryAsync("/vm"));
        Assert.Empty(await _dom0.DirectoryAsync("/libxl"));
        foreach (var pid in agentPids) Assert.False(Directory.Exists($"/proc/{pid}"), $"agent {pid} still exists");
    }

    [SkippableFact]
    public async Task Domains_shut_down_through_control_shutdown_and_crash_when_their_agent_is_killed()
    {
        var (manager, dom0) = await StartAsync();
        var web = await manager.CreateAsync(Config("web"));
        var db = await manager.CreateAsync(Config("db"));
        await AgentOnRingAsync(web);
        await AgentOnRingAsync(db);
        Assert.Equal("1", await dom0.ReadAsync($"/local/domain/{web.Domid}/control/feature-poweroff"));
        Assert.Equal([("web", DomainState.Running), ("db", DomainState.Running)], manager.List().Select(i => (i.Name, i.State)));
        var pids = new[] { web.Agent!.AgentPid, db.Agent!.AgentPid };
        // xl's Time(s): CPU time from the domain's cgroup (the agent's start-up at least).
        Assert.True(web.CpuSeconds() > 0);

        // xl shutdown: the agent sees control/shutdown over its ring, stops init and exits as poweroff; on_poweroff=destroy.
        await manager.ShutdownAsync("web", reboot: false, wait: Limit);
        Assert.Equal(Hypervisor.Domains.Spawn.ShutdownReason.Poweroff, (await web.Agent.Exited).Reason);
        await UntilAsync(() => Task.FromResult(manager.Find("web") is null), "web destroyed by on_poweroff");
        Assert.Null(await dom0.TryReadAsync($"/local/domain/{web.Domid}/name"));

        // An agent that dies is a crashed domain; on_crash=destroy.
        db.Agent.Kill();
        Assert.Equal(Hypervisor.Domains.Spawn.ShutdownReason.Crash, (await db.Agent.Exited).Reason);
        await UntilAsync(() => Task.FromResult(manager.Find("db") is null), "db destroyed by on_crash");
        await AssertNothingLeftAsync(pids);
    }

    [SkippableFact]
    public async Task Reboot_restarts_preserve_keeps_a_crashed_domain_and_pause_freezes()
    {
        var (manager, dom0) = await StartAsync();
        var web = await manager.CreateAsync(Config("web", onCrash: LifecycleAction.Preserve));
        await AgentOnRingAsync(web);

        manager.Pause("web", pause: true);
        Assert.True(web.Agent!.Cgroup.IsFrozen);
        Assert.Equal(DomainState.Paused, manager.List()[0].State);
        manager.Pause("web", pause: false);
        Assert.False(web.Agent.Cgroup.IsFrozen);

        await manager.ShutdownAsync("web", reboot: true, wait: Limit);
        Assert.Equal(Hypervisor.Domains.Spawn.ShutdownReason.Reboot, (await web.Agent.Exited).Reason);
        await UntilAsync(() => Task.FromResult(manager.Find("web") is { } d && d.Domid != web.Domid && d.State == DomainState.Running),
            "web restarted by on_reboot");
        var again = manager.Find("web")!;
        await AgentOnRingAsync(again);

        again.Agent!.Kill();
        await UntilAsync(() => Task.FromResult(again.State == DomainState.Crashed), "web crashed and preserved");
        Assert.Matches("^web-[0-9]{8}T[0-9]{4}Z$", await dom0.ReadAsync($"/local/domain/{again.Domid}/name"));
        await manager.DestroyAsync(again.Domid.ToString());
        await AssertNothingLeftAsync(web.Agent.AgentPid, again.Agent.AgentPid);
    }

    [SkippableFact]
    public async Task Sysrq_c_crashes_the_domain_and_unknown_requests_are_ignored()
    {
        var (manager, dom0) = await StartAsync();
        var web = await manager.CreateAsync(Config("web", onCrash: LifecycleAction.Preserve));
        await AgentOnRingAsync(web);
        var dom = $"/local/domain/{web.Domid}";

        // Nonsense is acknowledged (cleared) and ignored; the domain keeps running.
        await dom0.WriteAsync($"{dom}/control/shutdown", "explode");
        await UntilAsync(async () => await dom0.ReadAsync($"{dom}/control/shutdown") == "", "the agent to acknowledge control/shutdown");
        await dom0.WriteAsync($"{dom}/control/sysrq", "z");
        await UntilAsync(async () => await dom0.ReadAsync($"{dom}/control/sysrq") == "", "the agent to acknowledge control/sysrq");
        Assert.Equal(DomainState.Running, web.State);
        Assert.False(web.Agent!.Exited.IsCompleted);

        await dom0.WriteAsync($"{dom}/control/sysrq", "c");
        Assert.Equal(Hypervisor.Domains.Spawn.ShutdownReason.Crash, (await web.Agent.Exited).Reason);
        await UntilAsync(() => Task.FromResult(web.State == DomainState.Crashed), "web crashed and preserved");
        await manager.DestroyAsync(web.Domid.ToString());
        await AssertNothingLeftAsync(web.Agent.AgentPid);
    }

    [SkippableFact]
    public async Task Rename_moves_the_network_namespace_name_and_the_old_name_stays_held_until_destroy()
    {
        var (manager, dom0) = await StartAsync();
        var web = await manager.CreateAsync(Config("web"));
        await AgentOnRingAsync(web);
        Assert.Contains(_names.Netns("web"), NetnsNames.List(_names.Prefix));

        await manager.RenameAsync("web", "www");
        Assert.Equal("www", await dom0.ReadAsync($"/local/domain/{web.Domid}/name"));
        Assert.Equal([_names.Netns("www")], NetnsNames.List(_names.Prefix));
        Assert.Equal(_names.Netns("www"), web.Agent!.NetnsName);
        // The cgroup keeps the old name, so a new "web" is refused until www is destroyed.
        var held = await Assert.ThrowsAsync<DomainException>(() => manager.CreateAsync(Config("web")));
        Assert.Equal(409, held.Status);
        Assert.Contains("still held by domain 'www'", held.Message);

        await manager.DestroyAsync("www");
        await AssertNothingLeftAsync(web.Agent.AgentPid);
        var again = await manager.CreateAsync(Config("web"));
        await manager.DestroyAsync(again);
    }

    public async ValueTask DisposeAsync()
    {
        if (_manager is not null) await _manager.DisposeAsync();
        if (_dom0 is not null) await _dom0.DisposeAsync();
        if (_listener is not null) await _listener.DisposeAsync();
        _host?.Dispose();
        if (_host is not null) GuestHarness.RemoveInstance(_names);
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
