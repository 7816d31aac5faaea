namespace XenIo.Hypervisor.Domains.Cgroups;

/// <summary>Which freezer pauses domains.</summary>
public enum FreezerKind
{
    None,

    /// <summary>cgroup v1 <c>freezer.state</c> (FROZEN/THAWED).</summary>
    V1,

    /// <summary>cgroup v2 <c>cgroup.freeze</c>, confirmed through <c>cgroup.events</c>.</summary>
    V2,
}

/// <summary>
/// Where this host's cgroup hierarchies are and which one serves each job. Hosts differ: pure v2
/// (systemd's default), pure v1, or both side by side (v1 controllers plus a v2 tree with few or no
/// controllers, as on this project's machines). Each job takes v2 when its controller is enabled in the
/// v2 tree, else the v1 hierarchy of that controller. The freezer prefers v1 where it is mounted (v2's
/// cgroup.freeze is used on hosts without it) and kill uses v2's cgroup.kill wherever a v2 tree exists.
/// </summary>
public sealed record CgroupLayout
{
    /// <summary>Mount point of the cgroup2 tree, if any (/sys/fs/cgroup, or /sys/fs/cgroup/unified side by side with v1).</summary>
    public string? UnifiedRoot { get; init; }

    /// <summary>Controllers available in the v2 tree (its root's cgroup.controllers).</summary>
    public IReadOnlySet<string> UnifiedControllers { get; init; } = new HashSet<string>();

    /// <summary>v1 hierarchies by controller name (memory, cpu, freezer, …) and their mount points.</summary>
    public IReadOnlyDictionary<string, string> V1Roots { get; init; } = new Dictionary<string, string>();

    public FreezerKind Freezer { get; init; }

    /// <summary>The memory controller's hierarchy root, and whether it is v2.</summary>
    public (string Root, bool V2)? Memory => Pick("memory");

    public (string Root, bool V2)? Cpu => Pick("cpu");

    private (string Root, bool V2)? Pick(string controller)
    {
        if (UnifiedRoot is not null && UnifiedControllers.Contains(controller)) return (UnifiedRoot, true);
        if (V1Roots.TryGetValue(controller, out var root)) return (root, false);
        return null;
    }

    /// <summary>Reads the mount table (/proc/self/mounts) and each v2 root's controllers.</summary>
    public static CgroupLayout Detect(string mountsFile = "/proc/self/mounts")
    {
        string? unified = null;
        var v1 = new Dictionary<string, string>();
        foreach (var line in File.ReadLines(mountsFile))
        {
            var f = line.Split(' ');
            if (f.Length < 4) continue;
            var mountPoint = f[1].Replace("\\040", " ", StringComparison.Ordinal);
            if (f[2] == "cgroup2") unified ??= mountPoint;
            else if (f[2] == "cgroup")
                foreach (var opt in f[3].Split(','))
                    if (opt is "memory" or "cpu" or "cpuacct" or "freezer" or "pids" or "cpuset" or "blkio" or "devices")
                        v1.TryAdd(opt, mountPoint);
        }
        var controllers = new HashSet<string>();
        if (unified is not null)
        {
            var file = Path.Combine(unified, "cgroup.controllers");
            if (File.Exists(file))
                foreach (var c in File.ReadAllText(file).Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                    controllers.Add(c);
        }
        var freezer = v1.ContainsKey("freezer") ? FreezerKind.V1 : unified is not null ? FreezerKind.V2 : FreezerKind.None;
        return new CgroupLayout { UnifiedRoot = unified, UnifiedControllers = controllers, V1Roots = v1, Freezer = freezer };
    }

    /// <summary>How many hierarchies each domain's cgroup is created in.</summary>
    public int HierarchyCount => Hierarchies().Count();

    /// <summary>Hierarchies a domain's cgroup is created in: each used v1 hierarchy, and the v2 tree when mounted.</summary>
    internal IEnumerable<(string Root, bool V2)> Hierarchies()
    {
        var seen = new HashSet<string>();
        if (UnifiedRoot is not null && seen.Add(UnifiedRoot)) yield return (UnifiedRoot, true);
        foreach (var job in new[] { Memory, Cpu })
            if (job is { V2: false } j && seen.Add(j.Root)) yield return j;
        if (Freezer == FreezerKind.V1 && V1Roots.TryGetValue("freezer", out var fr) && seen.Add(fr)) yield return (fr, false);
    }
}
