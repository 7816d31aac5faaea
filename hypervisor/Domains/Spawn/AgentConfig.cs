using System.Text.Json.Serialization;

namespace XenIo.Hypervisor.Domains.Spawn;

/// <summary>
/// What the guest agent is told at start, as JSON on its config descriptor (<see cref="AgentFds.Config"/>).
/// Descriptor numbers name what the agent inherited; absent ones were not given. Properties are settable
/// because System.Text.Json's source generator sets init-only ones to default when a key is absent,
/// which would lose the defaults below.
/// </summary>
public sealed record AgentConfig
{
    /// <summary>The domain's name; also the guest's hostname.</summary>
    public required string Name { get; set; }
    public int Domid { get; set; }

    /// <summary>The init program and its arguments; <c>/bin/sh</c> by default.</summary>
    public IReadOnlyList<string> Init { get; set; } = ["/bin/sh"];

    /// <summary>Extra environment entries (<c>KEY=value</c>) for init, after TERM, PATH, HOME and HOSTNAME.</summary>
    public IReadOnlyList<string> Environment { get; set; } = [];

    /// <summary>Host directories the guest must not see (run and state directories): an empty read-only tmpfs covers each.</summary>
    public IReadOnlyList<string> HiddenPaths { get; set; } = [];

    /// <summary>True when the domain runs in its own user namespace (<c>isolation=userns</c>).</summary>
    public bool Userns { get; set; }

    public int? MemoryFd { get; set; }
    public int? HypercallFd { get; set; }

    /// <summary>A stream socket the agent bridges init's terminal to (debug console); null: none.</summary>
    public int? ConsoleFd { get; set; }

    /// <summary>The xenstore page's frame in the domain's memory (<c>store/ring-ref</c>), if hyperd introduced the domain.</summary>
    public uint? StoreFrame { get; set; }

    /// <summary>The guest's store port (unbound for dom0, bound by xenstored at introduction).</summary>
    public uint? StorePort { get; set; }

    /// <summary>The inherited descriptor of the guest's end of <see cref="StorePort"/>.</summary>
    public int? StoreEventFd { get; set; }

    /// <summary>The console ring's frame (<c>console/ring-ref</c>) and the guest's console port and its endpoint descriptor.</summary>
    public uint? ConsoleFrame { get; set; }
    public uint? ConsolePort { get; set; }
    public int? ConsoleEventFd { get; set; }

    /// <summary>How long init gets between SIGTERM and SIGKILL on a graceful stop.</summary>
    public int StopTimeoutMs { get; set; } = 10_000;
}

/// <summary>Source-generated JSON (the agent is NativeAOT: no reflection).</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(AgentConfig))]
public sealed partial class AgentConfigJson : JsonSerializerContext;

/// <summary>
/// Where the agent finds what it inherited. 0 is /dev/null, 1 and 2 its log; the rest are fixed so the
/// agent, hyperd and anything inspecting /proc/&lt;pid&gt;/fd agree.
/// </summary>
public static class AgentFds
{
    public const int Memory = 3;
    public const int Hypercall = 4;
    public const int Config = 5;
    public const int Notify = 6;
    public const int Console = 7;

    /// <summary>First number for further descriptors (TAP, FUSE) in the order they are given.</summary>
    public const int FirstExtra = 8;
}
