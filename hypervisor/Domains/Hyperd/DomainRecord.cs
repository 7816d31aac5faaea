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
    public DomainConfig Config { get; }
    public HostedDomain Hosted { get; }
    public Guid Uuid { get; }
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
        Vcpus = Config.Vcpus,
        State = State,
        TimeSeconds = Math.Round(Stopwatch.GetElapsedTime(Started).TotalSeconds, 1),
        Uuid = Uuid.ToString("D"),
        AgentPid = Agent?.AgentPid,
        ConsoleEvtchn = ConsolePort,
        ShutdownReason = ShutdownReason?.ToString().ToLowerInvariant(),
    };

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
    [JsonPropertyName("memory_mib")]
    public long MemoryMiB { get; init; }
    public int Vcpus { get; init; }
    public DomainState State { get; init; }

    /// <summary>Seconds since the domain was created (xl shows CPU seconds; XenIo shows wall time).</summary>
    public double TimeSeconds { get; init; }
    public string? Uuid { get; init; }
    public int? AgentPid { get; init; }
    /// <summary>The guest's console event channel port (<c>console/port</c>); consoled's TCP port is not known to hyperd.</summary>
    public uint ConsoleEvtchn { get; init; }
    public string? ShutdownReason { get; init; }
}

/// <summary>A toolstack request that cannot be done, with the HTTP status hyperd answers it with.</summary>
public sealed class DomainException(int status, string message) : Exception(message)
{
    public int Status { get; } = status;

    public static DomainException NotFound(string id) => new(404, $"no domain '{id}'");
}
