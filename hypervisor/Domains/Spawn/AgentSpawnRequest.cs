using System.Runtime.InteropServices;
using XenIo.Hypervisor.Domains.Cgroups;

namespace XenIo.Hypervisor.Domains.Spawn;

/// <summary>What to start a guest agent with. Descriptors are placed at <see cref="AgentFds"/> numbers.</summary>
public sealed record AgentSpawnRequest
{
    /// <summary>The agent's configuration; the descriptor numbers in it are filled in by the spawner.</summary>
    public required AgentConfig Config { get; init; }

    /// <summary>How to run the agent: its executable and leading arguments (a NativeAOT <c>xenio-guest</c>, or <c>dotnet xenio-guest.dll</c>).</summary>
    public required IReadOnlyList<string> AgentCommand { get; init; }

    public SafeHandle? Memory { get; init; }
    public SafeHandle? Hypercall { get; init; }

    /// <summary>A connected stream socket the agent bridges init's terminal to (the debug console).</summary>
    public SafeHandle? Console { get; init; }

    /// <summary>Further descriptors (TAP, FUSE), placed from <see cref="AgentFds.FirstExtra"/> on.</summary>
    public IReadOnlyList<SafeHandle> Extra { get; init; } = [];

    /// <summary>Where the agent's stdout and stderr go; null: /dev/null.</summary>
    public SafeHandle? Log { get; init; }

    /// <summary><c>isolation=userns</c>: the domain runs in its own user namespace whose root is <see cref="UsernsHostId"/> on the host.</summary>
    public bool Userns { get; init; }

    /// <summary>The host uid and gid guest root maps to under <see cref="Userns"/> (unprivileged; one id per domain is best).</summary>
    public int UsernsHostId { get; init; } = 100_000;

    public CgroupLimits Limits { get; init; } = CgroupLimits.None;

    /// <summary>How long the agent may take from spawn to a running init.</summary>
    public TimeSpan StartTimeout { get; init; } = TimeSpan.FromSeconds(30);
}
