using System.Globalization;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Win32.SafeHandles;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Domains.Cgroups;
using XenIo.Hypervisor.Domains.Spawn;
using XenIo.Hypervisor.Domains.Toolstack;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;

namespace XenIo.Hypervisor.Domains.Hyperd;

public sealed record DomainManagerOptions
{
    /// <summary>Grant table frames per domain (<c>max_grant_frames</c>).</summary>
    public uint GrantFrames { get; init; } = 4;

    /// <summary>How to run the agent; null: <see cref="AgentSpawner.DefaultAgentCommand"/>.</summary>
    public IReadOnlyList<string>? AgentCommand { get; init; }

    /// <summary>Host paths the guest must not see (the run and state directories).</summary>
    public IReadOnlyList<string> HiddenPaths { get; init; } = [];

    /// <summary>Where each agent's stdout/stderr go (<c>&lt;name&gt;.log</c>); null: nowhere.</summary>
    public string? LogDirectory { get; init; }

    public int StopTimeoutMs { get; init; } = 10_000;
}

/// <summary>
/// hyperd's toolstack core (libxl's role): creates domains from a <see cref="DomainConfig"/> by
/// composing the core (memory, grant table, event channels), xenstore (introduction and libxl's
/// layout) and the agent spawner; tracks their state; applies <c>on_poweroff|on_reboot|on_crash</c>;
/// and destroys them leaving nothing behind. One operation at a time, as libxl's domain lock does.
/// Without a spawner, domains are created without an agent and the guest's descriptors stay with the
/// caller (harnesses, external frontends).
/// </summary>
public sealed partial class DomainManager : IAsyncDisposable
{
    /// <summary>Owner id of the ports the toolstack allocates in a guest's table for it (the guest's connection did not make them).</summary>
    public const long ToolstackPortOwner = Events.EventChannelTable.ToolstackOwner;

    /// <summary>Grant refs libxl reserves (GNTTAB_RESERVED_CONSOLE, GNTTAB_RESERVED_XENSTORE).</summary>
    public const uint ConsoleGrantRef = 0, XenstoreGrantRef = 1;

    private readonly CoreHost host;
    private readonly XenstoreClient dom0;
    private readonly AgentSpawner? spawner;
    private readonly DomainManagerOptions _options;
    private readonly ILogger _log;
    private readonly SemaphoreSlim _lock = new(1, 1);
    private readonly Dictionary<ushort, DomainRecord> _domains = [];
    private readonly Lock _gate = new();
    private ushort _nextDomid = 1;
    private bool _disposed;

    public DomainManager(CoreHost host, XenstoreClient dom0, AgentSpawner? spawner, DomainManagerOptions? options = null, ILogger? logger = null)
    {
        this.host = host;
        this.dom0 = dom0;
        this.spawner = spawner;
        _options = options ?? new();
        _log = logger ?? NullLogger.Instance;
        host.DomainShutdown += OnHypercallShutdown;
        host.GuestDisconnected += OnGuestDisconnected;
    }

    public CoreHost Host => host;

    /// <summary>
    /// SCHEDOP_shutdown from a domain without an agent (a harness or external frontend holding its
    /// descriptors): the domain ends with that reason. Agents report through their notify pipe instead.
    /// Raised on the hypercall thread, which destroying a domain needs, so the work goes to the pool.
    /// </summary>
    private void OnHypercallShutdown(ushort domid, Hypercalls.ShutdownReason reason)
    {
        if (AgentlessDomain(domid) is { } d) _ = Task.Run(() => EndAsync(d, (Spawn.ShutdownReason)(int)reason));
    }

    /// <summary>An agentless domain whose process closed its hypercall connection without shutting down has crashed.</summary>
    private void OnGuestDisconnected(ushort domid)
    {
        if (AgentlessDomain(domid) is { Hosted.ShutdownReason: null } d) _ = Task.Run(() => EndAsync(d, Spawn.ShutdownReason.Crash));
    }

    private DomainRecord? AgentlessDomain(ushort domid)
    {
        // Agents report their end themselves.
        lock (_gate)
            return _domains.TryGetValue(domid, out var d) && d.Agentless && d.State is DomainState.Running or DomainState.Paused ? d : null;
    }

    /// <summary>Raised after a domain was destroyed (by request or by its lifecycle action).</summary>
    public event Action<DomainRecord>? Destroyed;

    public IReadOnlyList<DomainRecord> Domains
    {
        get { lock (_gate) return [.. _domains.Values.OrderBy(d => d.Domid)]; }
    }

    public IReadOnlyList<DomainInfo> List() => [.. Domains.Select(d => d.Info())];

    /// <summary>A domain by name or by domid.</summary>
    public DomainRecord? Find(string nameOrId)
    {
        lock (_gate)
        {
            if (ushort.TryParse(nameOrId, NumberStyles.None, CultureInfo.InvariantCulture, out var id) && _domains.TryGetValue(id, out var byId))
                return byId;
            return _domains.Values.FirstOrDefault(d => d.Name == nameOrId);
        }
    }

    private DomainRecord Get(string nameOrId) => Find(nameOrId) ?? throw DomainException.NotFound(nameOrId);

    public Task<DomainRecord> CreateAsync(DomainConfig config, CancellationToken cancellationToken = default) =>
        CreateAsync(config, startAgent: spawner is not null, cancellationToken);

    /// <summary>
    /// Creates a domain whose agent is not started, even where this manager runs agents: its descriptors
    /// stay with hyperd for a harness or an external frontend to take (<see cref="HostedDomain.TakeGuestEnd"/>),
    /// and its end is the hypercall shutdown or the loss of its hypercall connection.
    /// </summary>
    public Task<DomainRecord> CreateAgentlessAsync(DomainConfig config, CancellationToken cancellationToken = default) =>
        CreateAsync(config, startAgent: false, cancellationToken);

    private async Task<DomainRecord> CreateAsync(DomainConfig config, bool startAgent, CancellationToken cancellationToken)
    {
        Validate(config);
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try { return await CreateLockedAsync(config, startAgent, cancellationToken).ConfigureAwait(false); }
        finally { _lock.Release(); }
    }

    internal static void Validate(DomainConfig config)
    {
        // JSON may carry explicit nulls where the record has defaults: refuse them before anything reads them.
        if (config.Name is null || config.Init is null || config.Vifs is null || config.Disks is null
            || config.Init.Any(a => a is null) || config.Vifs.Any(v => v is null) || config.Disks.Any(d => d is null))
            throw new DomainException(400, "bad domain configuration: name, init, vifs and disks must not be null");
        if (!KernelNames.IsValid(config.Name))
            throw new DomainException(400, $"'{config.Name}' is not a valid domain name: letters, digits, '-', '_' and '.', at most {KernelNames.MaxNameLength}, not starting with '.' or '-'");
        if (config.MemoryMiB < 1 || config.MemoryMiB > 1 << 20) throw new DomainException(400, $"memory={config.MemoryMiB}: must be 1..1048576 MiB");
        if (config.MaxMemMiB < 0 || config.MaxMemMiB > 1 << 20) throw new DomainException(400, $"maxmem={config.MaxMemMiB}: must be 0..1048576 MiB");
        if (config.Vcpus < 1 || config.Vcpus > 512) throw new DomainException(400, $"vcpus={config.Vcpus}: must be 1..512");
        if (config.Init.Count == 0) throw new DomainException(400, "init: empty command");
        var devids = new HashSet<int>();
        foreach (var vif in config.Vifs)
        {
            if (vif.Devid < 0 || !devids.Add(vif.Devid)) throw new DomainException(400, $"vif devid {vif.Devid}: negative or used twice");
            ValidateVif(vif);
        }
        var vdevs = new HashSet<int>();
        foreach (var disk in config.Disks)
            if (!vdevs.Add(disk.VirtualDevice)) throw new DomainException(400, $"disk {disk.Vdev}: virtual device used twice");
    }

    /// <summary>What one vif must be on its own (at create and at network-attach).</summary>
    internal static void ValidateVif(VifConfig vif)
    {
        if (vif.Bridge is null || vif.Type is null) throw new DomainException(400, "vif: bridge and type must not be null");
        if (vif.Mac is { } mac && !IsUnicastMac(mac)) throw new DomainException(400, $"vif mac '{mac}': expected six hex pairs separated by ':', unicast");
        // A vifname becomes a Linux interface name: at most 15 characters (IFNAMSIZ - 1), no '/', ':' or spaces.
        if (vif.Vifname is { } ifname && (ifname.Length is 0 or > 15 || ifname.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))))
            throw new DomainException(400, $"vifname '{ifname}': 1..15 letters, digits, '-', '_' or '.'");
        if (vif.Mtu is < 68 or > 65535) throw new DomainException(400, $"vif mtu {vif.Mtu}: must be 68..65535");
        if (!KernelNames.IsValid(vif.Bridge) || vif.Bridge.Length > 15) throw new DomainException(400, $"vif bridge '{vif.Bridge}': not a bridge name (1..15 letters, digits, '-', '_' or '.')");
    }

    private async Task<DomainRecord> CreateLockedAsync(DomainConfig config, bool startAgent, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ushort domid;
        foreach (var disk in config.Disks) ValidateDisk(disk);
        foreach (var vif in config.Vifs) await ValidateBridgeAsync(vif.Bridge, cancellationToken).ConfigureAwait(false);
        lock (_gate)
        {
            if (_domains.Values.Any(d => d.Name == config.Name))
                throw new DomainException(409, $"a domain named '{config.Name}' exists already");
            if (_domains.Values.FirstOrDefault(d => d.KernelName == config.Name) is { } holder)
                throw new DomainException(409, $"the name '{config.Name}' is still held by domain '{holder.Name}' (renamed from it; its cgroup keeps the name until it is destroyed)");
            foreach (var vif in config.Vifs) ValidateVifUnique(vif.Mac, vif.Vifname);
            domid = AllocateDomid();
        }
        var grantFrames = _options.GrantFrames;
        long frames = Math.Max(config.MemoryMiB, config.MaxMemMiB) * 256;
        // The grant table and the two toolstack pages sit in the domain's memory, as in Xen.
        if (frames < grantFrames + 3) throw new DomainException(400, $"memory={config.MemoryMiB}: too small for the grant table");
        var hosted = host.TryCreateDomain(domid, config.Name, (uint)frames, grantFrames)
            ?? throw new DomainException(507, $"the page pool is exhausted: domain '{config.Name}' needs {frames} pages, {host.Pool.FreePages} of {host.Pool.BudgetPages} are free");
        var domain = new DomainRecord(domid, config, hosted, Guid.NewGuid())
        {
            KernelName = config.Name,
            ConsoleFrame = grantFrames,
            StoreFrame = grantFrames + 1,
            TargetKiB = config.MemoryMiB * 1024,
        };
        lock (_gate) _domains.Add(domid, domain);
        try
        {
            // libxl seeds the reserved refs so dom0's backends can map the console and store pages by grant.
            hosted.GrantTable.GrantReserved(ConsoleGrantRef, DomainIds.Dom0, domain.ConsoleFrame);
            hosted.GrantTable.GrantReserved(XenstoreGrantRef, DomainIds.Dom0, domain.StoreFrame);
            domain.StorePort = AllocPort(domid, out var storeEnd);
            domain.StoreEndpoint = storeEnd;
            domain.ConsolePort = AllocPort(domid, out var consoleEnd);
            domain.ConsoleEndpoint = consoleEnd;

            // Introduce first: xenstored creates /local/domain/<id> for the guest, then the layout gives it libxl's permissions.
            await dom0.IntroduceAsync(domid, domain.StoreFrame, domain.StorePort, cancellationToken).ConfigureAwait(false);
            var vifs = config.Vifs.Select(v => (v.Devid, v.Mac ?? UniqueMac(), v.Vifname ?? $"vif{domid}.{v.Devid}")).ToList();
            domain.Vifs = vifs;
            var steps = new List<XenstoreStep>();
            steps.AddRange(XenstoreLayout.Domain(domid, config.Name, domain.Uuid, domain.TargetKiB,
                Math.Max(config.MemoryMiB, config.MaxMemMiB) * 1024, config.Vcpus, domain.StoreFrame, domain.StorePort));
            steps.AddRange(XenstoreLayout.Console(domid, domain.ConsoleFrame, domain.ConsolePort, config.Name));
            foreach (var vif in config.Vifs)
            {
                var (_, mac, vifname) = vifs.First(v => v.Devid == vif.Devid);
                steps.AddRange(XenstoreLayout.Vif(domid, vif, mac, vifname));
            }
            foreach (var disk in config.Disks) steps.AddRange(XenstoreLayout.Vbd(domid, disk));
            await XenstoreLayoutWriter.ApplyAsync(dom0, steps, cancellationToken).ConfigureAwait(false);

            domain.Agentless = !startAgent;
            if (startAgent) await StartAgentAsync(domain, cancellationToken).ConfigureAwait(false);
            domain.State = DomainState.Running;
            _log.LogInformation("domain {Name} created as {Domid} ({Frames} pages)", config.Name, domid, frames);
            return domain;
        }
        catch (Exception e)
        {
            _log.LogWarning("domain {Name}: creation failed: {Error}", config.Name, e.Message);
            await TearDownAsync(domain).ConfigureAwait(false);
            if (e is DomainException) throw;
            throw new DomainException(500, $"cannot create domain '{config.Name}': {e.Message}");
        }
    }

    private ushort AllocateDomid()
    {
        // Xen hands out increasing ids and wraps; ids in use are skipped.
        for (int i = 0; i < DomainIds.FirstReserved; i++)
        {
            var id = _nextDomid;
            _nextDomid = (ushort)(id + 1 >= DomainIds.FirstReserved ? 1 : id + 1);
            if (!_domains.ContainsKey(id)) return id;
        }
        throw new DomainException(507, "no free domain id");
    }

    private uint AllocPort(ushort domid, out SafeFileHandle endpoint)
    {
        int port = host.Events.AllocUnbound(domid, ToolstackPortOwner, DomainIds.Dom0, out var end);
        if (port < 0 || end is null) throw new DomainException(500, $"domain {domid}: cannot allocate an event channel (errno {-port})");
        endpoint = end;
        return (uint)port;
    }

    private static bool IsUnicastMac(string mac)
    {
        if (mac.Length != 17) return false;
        for (int i = 0; i < 17; i++)
            if (i % 3 == 2 ? mac[i] != ':' : !char.IsAsciiHexDigit(mac[i])) return false;
        return (Convert.ToByte(mac[..2], 16) & 1) == 0;
    }

    /// <summary>A MAC in Xen's OUI 00:16:3e, random in its last three bytes (as libxl does).</summary>
    public static string GenerateMac()
    {
        Span<byte> b = stackalloc byte[3];
        RandomNumberGenerator.Fill(b);
        return $"00:16:3e:{b[0] & 0x7f:x2}:{b[1]:x2}:{b[2]:x2}";
    }

    private async Task StartAgentAsync(DomainRecord domain, CancellationToken cancellationToken)
    {
        var config = domain.Config;
        FileStream? log = _options.LogDirectory is { } dir
            ? new FileStream(Path.Combine(dir, config.Name + ".log"), FileMode.Append, FileAccess.Write)
            : null;
        using var ownedLog = log;
        using var hypercall = domain.Hosted.TakeGuestEnd();
        var agent = await spawner!.StartAsync(new AgentSpawnRequest
        {
            Config = new AgentConfig
            {
                Name = config.Name,
                Domid = domain.Domid,
                Init = config.Init,
                HiddenPaths = _options.HiddenPaths,
                StopTimeoutMs = _options.StopTimeoutMs,
                StoreFrame = domain.StoreFrame,
                StorePort = domain.StorePort,
                StoreEventFd = AgentFds.FirstExtra,
                ConsoleFrame = domain.ConsoleFrame,
                ConsolePort = domain.ConsolePort,
                ConsoleEventFd = AgentFds.FirstExtra + 1,
            },
            AgentCommand = _options.AgentCommand ?? AgentSpawner.DefaultAgentCommand(),
            Memory = domain.Hosted.Memory.Handle,
            Hypercall = hypercall,
            Extra = [domain.StoreEndpoint!, domain.ConsoleEndpoint!],
            Log = log?.SafeFileHandle,
            Limits = CgroupLimits.From(config),
            Userns = config.Isolation == GuestIsolation.Userns,
            UsernsHostId = 100_000 + domain.Domid,
        }, cancellationToken).ConfigureAwait(false);
        domain.Agent = agent;
        // The agent holds the guest's ends now; hyperd keeps none, so the guest's death closes them.
        domain.CloseEndpoints();
        _ = agent.Exited.ContinueWith(t => OnAgentExitedAsync(domain, t), TaskScheduler.Default).Unwrap();
    }

    private Task OnAgentExitedAsync(DomainRecord domain, Task<AgentExit> exited) =>
        EndAsync(domain, exited.IsCompletedSuccessfully ? exited.Result.Reason : Spawn.ShutdownReason.Crash);

    /// <summary>The domain has ended (poweroff, reboot, crash): records it and applies its on_* action.</summary>
    private async Task EndAsync(DomainRecord domain, Spawn.ShutdownReason reason)
    {
        try
        {
            LifecycleAction action;
            lock (_gate)
            {
                if (domain.State is DomainState.Dying or DomainState.Shutdown or DomainState.Crashed || !_domains.ContainsKey(domain.Domid)) return;
                domain.ShutdownReason = reason;
                domain.State = reason == Spawn.ShutdownReason.Crash ? DomainState.Crashed : DomainState.Shutdown;
                action = reason switch
                {
                    Spawn.ShutdownReason.Reboot => domain.Config.OnReboot,
                    Spawn.ShutdownReason.Crash => domain.Config.OnCrash,
                    _ => domain.Config.OnPoweroff,
                };
            }
            _log.LogInformation("domain {Name} ({Domid}): {Reason}; on_{Event}={Action}", domain.Name, domain.Domid, reason,
                reason switch { Spawn.ShutdownReason.Reboot => "reboot", Spawn.ShutdownReason.Crash => "crash", _ => "poweroff" }, action);
            await ApplyAsync(domain, action).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            _log.LogError(e, "domain {Name}: applying its lifecycle action failed", domain.Name);
        }
        finally
        {
            domain.MarkSettled();
        }
    }

    private async Task ApplyAsync(DomainRecord domain, LifecycleAction action)
    {
        switch (action)
        {
            case LifecycleAction.Preserve:
                // xl's preserve: kept (shutdown or crashed, memory and xenstore intact) for inspection until
                // destroyed, renamed with a time suffix so its name is free again.
                await PreserveAsync(domain).ConfigureAwait(false);
                break;
            case LifecycleAction.Destroy:
                await DestroyAsync(domain).ConfigureAwait(false);
                break;
            case LifecycleAction.Restart:
                await DestroyAsync(domain).ConfigureAwait(false);
                if (!_disposed) await CreateAsync(domain.Config, startAgent: !domain.Agentless, CancellationToken.None).ConfigureAwait(false);
                break;
            case LifecycleAction.RenameRestart:
            {
                // xl's rename-restart: the old domain is preserved under a new name, a new one starts under the old.
                var config = domain.Config;
                await PreserveAsync(domain).ConfigureAwait(false);
                if (!_disposed) await CreateAsync(config, startAgent: !domain.Agentless, CancellationToken.None).ConfigureAwait(false);
                break;
            }
        }
    }

    public Task DestroyAsync(string nameOrId) => DestroyAsync(Get(nameOrId));

    /// <summary>Kills the agent, releases and removes the domain from xenstore, frees its memory. Safe to call again.</summary>
    public async Task DestroyAsync(DomainRecord domain)
    {
        await _lock.WaitAsync().ConfigureAwait(false);
        try
        {
            lock (_gate)
            {
                if (!_domains.ContainsKey(domain.Domid)) return;
                domain.State = DomainState.Dying;
            }
            await TearDownAsync(domain).ConfigureAwait(false);
        }
        finally { _lock.Release(); }
        Destroyed?.Invoke(domain);
    }

    private async Task TearDownAsync(DomainRecord domain)
    {
        domain.State = DomainState.Dying;
        if (domain.Agent is { } agent)
        {
            try
            {
                if (agent.Cgroup.IsFrozen) agent.Cgroup.Thaw();
            }
            // A preserved domain's cgroup is gone already.
            catch (Exception e) when (e is IOException or NotSupportedException or InvalidOperationException) { }
            try { await agent.DestroyAsync().ConfigureAwait(false); }
            catch (Exception e) { _log.LogWarning("domain {Name}: destroying its agent: {Error}", domain.Name, e.Message); }
        }
        try { await dom0.ReleaseAsync(domain.Domid).ConfigureAwait(false); }
        catch (XenstoreException) { /* never introduced, or released already */ }
        try { await XenstoreLayoutWriter.ApplyAsync(dom0, XenstoreLayout.DomainRemoval(domain.Domid, domain.Uuid)).ConfigureAwait(false); }
        catch (Exception e) when (e is XenstoreException or IOException) { _log.LogWarning("domain {Name}: removing its xenstore nodes: {Error}", domain.Name, e.Message); }
        domain.CloseEndpoints();
        host.DestroyDomain(domain.Domid);
        lock (_gate) _domains.Remove(domain.Domid);
        _log.LogInformation("domain {Name} ({Domid}) destroyed", domain.Name, domain.Domid);
    }

    /// <summary>Asks the guest to power off or reboot (<c>control/shutdown</c>), as xl shutdown/reboot do; optionally waits until it is gone and its on_poweroff/on_reboot was applied.</summary>
    public async Task ShutdownAsync(string nameOrId, bool reboot, TimeSpan? wait = null, CancellationToken cancellationToken = default)
    {
        var domain = Get(nameOrId);
        if (domain.State is not (DomainState.Running or DomainState.Paused))
            throw new DomainException(409, $"domain '{domain.Name}' is {domain.State.ToString().ToLowerInvariant()}");
        await dom0.WriteAsync($"{XenstoreLayout.DomainPath(domain.Domid)}/control/shutdown", reboot ? "reboot" : "poweroff",
            cancellationToken: cancellationToken).ConfigureAwait(false);
        if (wait is { } timeout)
        {
            try { await domain.Settled.WaitAsync(timeout, cancellationToken).ConfigureAwait(false); }
            catch (TimeoutException) { throw new DomainException(504, $"domain '{domain.Name}' did not shut down within {timeout.TotalSeconds:0} s"); }
        }
    }

    /// <summary>Freezes (or thaws) every process of the domain through its cgroup's freezer.</summary>
    public void Pause(string nameOrId, bool pause)
    {
        var domain = Get(nameOrId);
        var agent = domain.Agent ?? throw new DomainException(409, $"domain '{domain.Name}' has no agent to pause");
        lock (_gate)
        {
            if (domain.State is not (DomainState.Running or DomainState.Paused))
                throw new DomainException(409, $"domain '{domain.Name}' is {domain.State.ToString().ToLowerInvariant()}");
            if (pause) agent.Cgroup.Freeze();
            else agent.Cgroup.Thaw();
            domain.State = pause ? DomainState.Paused : DomainState.Running;
        }
    }

    /// <summary>Sets the balloon target (<c>memory/target</c>, KiB); it cannot exceed the domain's static maximum.</summary>
    public async Task MemSetAsync(string nameOrId, long mib, CancellationToken cancellationToken = default)
    {
        var domain = Get(nameOrId);
        long max = Math.Max(domain.Config.MemoryMiB, domain.Config.MaxMemMiB);
        if (mib < 1 || mib > max) throw new DomainException(400, $"mem-set {mib}: must be 1..{max} MiB (the domain's maxmem)");
        await dom0.WriteAsync($"{XenstoreLayout.DomainPath(domain.Domid)}/memory/target",
            (mib * 1024).ToString(CultureInfo.InvariantCulture), cancellationToken: cancellationToken).ConfigureAwait(false);
        domain.TargetKiB = mib * 1024;
        // The guest's processes live within its target, as a Xen guest lives within its reservation:
        // the cgroup's memory limit follows it (never below the 4 MiB an agent needs to run).
        if (domain.Agent is { } agent)
        {
            try { agent.Cgroup.SetLimits(new CgroupLimits(Math.Max(mib, CgroupLimits.MinMemoryMiB) * 1024 * 1024, null)); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or InvalidOperationException)
            {
                _log.LogWarning("domain {Name}: memory/target set to {Mib} MiB but its cgroup limit was not changed: {Error}", domain.Name, mib, e.Message);
            }
        }
    }

    /// <summary>Destroys every domain (hyperd stopping: as a host going down, nothing survives it).</summary>
    public async ValueTask DisposeAsync()
    {
        _disposed = true;
        host.DomainShutdown -= OnHypercallShutdown;
        host.GuestDisconnected -= OnGuestDisconnected;
        foreach (var d in Domains) await DestroyAsync(d).ConfigureAwait(false);
    }
}
