using System.Text.Json.Serialization;

namespace XenIo.Hypervisor.Domains.Spawn;

/// <summary>
/// What the guest agent is told at start, as JSON on its config descriptor (<see cref="AgentFds.Config"/>).
/// Descriptor numbers name what the agent inherited; absent ones were not given.
/// </summary>
public sealed record AgentConfig
{
    /// <summary>The domain's name; also the guest's hostname.</summary>
    public required string Name { get; init; }
    public int Domid { get; init; }

    /// <summary>The init program and its arguments; <c>/bin/sh</c> by default.</summary>
    public IReadOnlyList<string> Init { get; init; } = ["/bin/sh"];

    /// <summary>Extra environment entries (<c>KEY=value</c>) for init, after TERM, PATH, HOME and HOSTNAME.</summary>
    public IReadOnlyList<string> Environment { get; init; } = [];

    /// <summary>Host directories the guest must not see (run and state directories): an empty read-only tmpfs covers each.</summary>
    public IReadOnlyList<string> HiddenPaths { get; init; } = [];

    /// <summary>True when the domain runs in its own user namespace (<c>isolation=userns</c>).</summary>
    public bool Userns { get; init; }

    public int? MemoryFd { get; init; }
    public int? HypercallFd { get; init; }

    /// <summary>A stream socket the agent bridges init's terminal to (debug console); null: none.</summary>
    public int? ConsoleFd { get; init; }

    /// <summary>How long init gets between SIGTERM and SIGKILL on a graceful stop.</summary>
    public int StopTimeoutMs { get; init; } = 10_000;
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
