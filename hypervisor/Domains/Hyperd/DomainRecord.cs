using System.Diagnostics;
using System.Text.Json.Serialization;
using Microsoft.Win32.SafeHandles;
using XenIo.Hypervisor.Domains.Spawn;

namespace XenIo.Hypervisor.Domains.Hyperd;

/// <summary>A domain's state as <c>xl list</c> shows it (r, p, s, c, d).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<DomainState>))]
public enum DomainState
{
    Running,
    Paused,
    Shutdown,
    Crashed,
    Dying,
}

/// <summary>
/// One domain hyperd runs: its configuration, the core's <see cref="HostedDomain"/>, the frames and
/// ports the toolstack set up for it, and its agent (none when created for a harness).
/// </summary>
public sealed class DomainRecord
{
    internal DomainRecord(ushort domid, DomainConfig config, HostedDomain hosted, Guid uuid)
    {
        Domid = domid;
        Config = config;
        Hosted = hosted;
        Uuid = uuid;
        Started = Stopwatch.GetTimestamp();
    }

    public ushort Domid { get; }
    public string Name => Config.Name;

    /// <summary>The names its network namespace and cgroup got at creation (a rename does not move them).</summary>
    public string KernelName { get; internal set; } = "";
    /// <summary>The configuration, with devices attached at runtime (kept across a restart, as libxl keeps them).</summary>
    public DomainConfig Config { get; internal set; }
    public HostedDomain Hosted { get; }
    public Guid Uuid { get; internal set; }
    public long Started { get; }
    public DomainState State { get; internal set; }

    public uint ConsoleFrame { get; internal set; }
    public uint StoreFrame { get; internal set; }
    public uint ConsolePort { get; internal set; }
    public uint StorePort { get; internal set; }

    /// <summary>The guest's ends of its store and console ports while no agent holds them (a harness takes them).</summary>
    public SafeFileHandle? StoreEndpoint { get; internal set; }
    public SafeFileHandle? ConsoleEndpoint { get; internal set; }

    public GuestAgent? Agent { get; internal set; }

    /// <summary>Created without an agent: whoever holds its descriptors is the guest.</summary>
    public bool Agentless { get; internal set; }

    /// <summary>Completes once the agent has ended and the domain's lifecycle action has been applied.</summary>
    public Task Settled => _settled.Task;

    private readonly TaskCompletionSource _settled = new(TaskCreationOptions.RunContinuationsAsynchronously);

    internal void MarkSettled() => _settled.TrySetResult();

    /// <summary>The memory target in KiB (<c>memory/target</c>).</summary>
    public long TargetKiB { get; internal set; }

    public ShutdownReason? ShutdownReason { get; internal set; }

    /// <summary>The vif names and MACs given to the domain's vifs, by devid.</summary>
    public IReadOnlyList<(int Devid, string Mac, string Vifname)> Vifs { get; internal set; } = [];

    public DomainInfo Info() => new()
    {
        Name = Name,
        Domid = Domid,
        MemoryMiB = TargetKiB / 1024,
        CurrentMiB = Hosted.Reservation.PopulatedPages / 256,
        MaxMemMiB = Math.Max(Config.MemoryMiB, Config.MaxMemMiB),
        Vcpus = Config.Vcpus,
        State = State,
        TimeSeconds = Math.Round(CpuSeconds(), 1),
        UptimeSeconds = Math.Round(Stopwatch.GetElapsedTime(Started).TotalSeconds, 1),
        Uuid = Uuid.ToString("D"),
        AgentPid = Agent?.AgentPid,
        ConsoleEvtchn = ConsolePort,
        ShutdownReason = ShutdownReason?.ToString().ToLowerInvariant(),
    };

    /// <summary>
    /// CPU seconds the domain's processes used (xl's Time(s)), from its cgroup: cgroup v2's
    /// <c>cpu.stat usage_usec</c> or v1's <c>cpuacct.usage</c>; 0 without an agent.
    /// </summary>
    public double CpuSeconds()
    {
        if (Agent is not { } agent) return 0;
        double seconds = 0;
        foreach (var dir in agent.Cgroup.Directories)
        {
            try
            {
                var stat = Path.Combine(dir, "cpu.stat");
                var acct = Path.Combine(dir, "cpuacct.usage");
                if (File.Exists(stat))
                {
                    foreach (var line in File.ReadLines(stat))
                        if (line.StartsWith("usage_usec ", StringComparison.Ordinal)
                            && long.TryParse(line.AsSpan(11), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var us))
                            seconds = Math.Max(seconds, us / 1e6);
                }
                else if (File.Exists(acct)
                    && long.TryParse(File.ReadAllText(acct).Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var ns))
                    seconds = Math.Max(seconds, ns / 1e9);
            }
            catch (IOException) { /* the cgroup went away with the domain */ }
        }
        return seconds;
    }

    internal void CloseEndpoints()
    {
        StoreEndpoint?.Dispose();
        ConsoleEndpoint?.Dispose();
        StoreEndpoint = ConsoleEndpoint = null;
    }
}

/// <summary>What <c>GET /domains</c> returns for one domain (xl list's columns plus XenIo's).</summary>
public sealed record DomainInfo
{
    public required string Name { get; init; }
    public int Domid { get; init; }
    /// <summary>The memory target (<c>memory/target</c>) in MiB.</summary>
    [JsonPropertyName("memory_mib")]
    public long MemoryMiB { get; init; }

    /// <summary>What the domain holds now (its populated pages): where the balloon has got to.</summary>
    [JsonPropertyName("current_mib")]
    public long CurrentMiB { get; init; }

    [JsonPropertyName("maxmem_mib")]
    public long MaxMemMiB { get; init; }
    public int Vcpus { get; init; }
    public DomainState State { get; init; }

    /// <summary>CPU seconds the domain has used (from its cgroup), as xl shows.</summary>
    public double TimeSeconds { get; init; }

    /// <summary>Wall-clock seconds since the domain was created.</summary>
    public double UptimeSeconds { get; init; }
    public string? Uuid { get; init; }
    public int? AgentPid { get; init; }
    /// <summary>The guest's console event channel port (<c>console/port</c>); consoled's TCP port is not known to hyperd.</summary>
    public uint ConsoleEvtchn { get; init; }
    public string? ShutdownReason { get; init; }

    /// <summary>consoled's TCP port for this domain's console (<c>console/telnet-port</c>), when one is published.</summary>
    public int? ConsolePort { get; init; }
}

/// <summary>A toolstack request that cannot be done, with the HTTP status hyperd answers it with.</summary>
public sealed class DomainException(int status, string message) : Exception(message)
{
    public int Status { get; } = status;

    public static DomainException NotFound(string id) => new(404, $"no domain '{id}'");
}
