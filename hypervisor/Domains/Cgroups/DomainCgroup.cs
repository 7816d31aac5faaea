using System.Globalization;
using XenIo.Hypervisor.Domains.Spawn;
using XenIo.Hypervisor.Interop;

namespace XenIo.Hypervisor.Domains.Cgroups;

/// <summary>
/// One domain's cgroup, in every hierarchy the layout uses (<c>&lt;root&gt;/xenio[-instance]/&lt;name&gt;</c>):
/// limits, membership, pause through the freezer, and removal that kills what is left first.
/// </summary>
public sealed class DomainCgroup
{
    private readonly CgroupLayout _layout;
    private readonly List<(string Dir, bool V2)> _dirs;

    private DomainCgroup(CgroupLayout layout, List<(string, bool)> dirs)
    {
        _layout = layout;
        _dirs = dirs;
    }

    /// <summary>The cgroup's directory in each hierarchy.</summary>
    public IReadOnlyList<string> Directories => _dirs.ConvertAll(d => d.Dir);

    /// <summary>
    /// Creates the cgroup and applies <paramref name="limits"/>. An existing group of the same name is
    /// refused: it belongs to a running domain or to a crashed instance that needs cleaning up.
    /// </summary>
    public static DomainCgroup Create(CgroupLayout layout, KernelNames names, string domainName, CgroupLimits limits)
    {
        var dirs = new List<(string, bool)>();
        var cgroup = new DomainCgroup(layout, dirs);
        try
        {
            foreach (var (root, v2) in layout.Hierarchies())
            {
                var parent = Path.Combine(root, names.CgroupParent);
                Directory.CreateDirectory(parent);
                if (v2) EnableV2Controllers(layout, root, parent);
                var dir = Path.Combine(parent, names.Cgroup(domainName));
                if (Directory.Exists(dir))
                    throw new InvalidOperationException($"cgroup {dir} already exists (a domain of that name, or left by a crash: `xenio cleanup`)");
                Directory.CreateDirectory(dir);
                dirs.Add((dir, v2));
            }
            cgroup.SetLimits(limits);
            return cgroup;
        }
        catch
        {
            cgroup.Remove();
            throw;
        }
    }

    /// <summary>Enables the memory and cpu controllers for children of the xenio folder, where v2 serves them.</summary>
    private static void EnableV2Controllers(CgroupLayout layout, string root, string parent)
    {
        var wanted = new List<string>();
        if (layout.Memory is { V2: true }) wanted.Add("+memory");
        if (layout.Cpu is { V2: true }) wanted.Add("+cpu");
        if (wanted.Count == 0) return;
        var line = string.Join(' ', wanted);
        foreach (var dir in new[] { root, parent })
        {
            var enabled = File.ReadAllText(Path.Combine(dir, "cgroup.subtree_control"));
            if (wanted.TrueForAll(w => enabled.Contains(w[1..], StringComparison.Ordinal))) continue;
            File.WriteAllText(Path.Combine(dir, "cgroup.subtree_control"), line);
        }
    }

    public void SetLimits(CgroupLimits limits)
    {
        if (limits.MemoryBytes is { } bytes)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(bytes, 4L * 1024 * 1024, nameof(limits));
            var (dir, v2) = DirFor(_layout.Memory, "memory");
            var value = bytes.ToString(CultureInfo.InvariantCulture);
            if (v2)
            {
                Write(dir, "memory.max", value);
                TryWrite(dir, "memory.swap.max", "0");
            }
            else
            {
                // memsw (memory+swap) must stay >= the memory limit: raise it first, lower it after.
                TryWrite(dir, "memory.memsw.limit_in_bytes", value);
                Write(dir, "memory.limit_in_bytes", value);
                TryWrite(dir, "memory.memsw.limit_in_bytes", value);
            }
        }
        if (limits.Vcpus is { } vcpus)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(vcpus, 1, nameof(limits));
            var (dir, v2) = DirFor(_layout.Cpu, "cpu");
            var quota = ((long)vcpus * CgroupLimits.CpuPeriodUs).ToString(CultureInfo.InvariantCulture);
            if (v2) Write(dir, "cpu.max", $"{quota} {CgroupLimits.CpuPeriodUs}");
            else
            {
                Write(dir, "cpu.cfs_period_us", CgroupLimits.CpuPeriodUs.ToString(CultureInfo.InvariantCulture));
                Write(dir, "cpu.cfs_quota_us", quota);
            }
        }
    }

    private (string Dir, bool V2) DirFor((string Root, bool V2)? job, string controller)
    {
        if (job is not { } j) throw new NotSupportedException($"no cgroup {controller} controller is available on this host");
        foreach (var d in _dirs)
            if (d.Dir.StartsWith(j.Root + "/", StringComparison.Ordinal)) return d;
        throw new InvalidOperationException($"the {controller} hierarchy at {j.Root} has no group for this domain");
    }

    /// <summary>Moves process <paramref name="pid"/> (all its threads) into the cgroup in every hierarchy.</summary>
    public void AddProcess(int pid)
    {
        foreach (var (dir, _) in _dirs) Write(dir, "cgroup.procs", pid.ToString(CultureInfo.InvariantCulture));
    }

    /// <summary>The processes in the group (from the first hierarchy; membership is the same in all).</summary>
    public IReadOnlyList<int> Processes()
    {
        var all = new HashSet<int>();
        foreach (var (dir, _) in _dirs)
            if (Directory.Exists(dir)) all.UnionWith(ReadPids(dir));
        return [.. all];
    }

    /// <summary>Pauses every process in the domain and returns once the kernel reports the group frozen.</summary>
    public void Freeze() => SetFrozen(true);

    public void Thaw() => SetFrozen(false);

    public bool IsFrozen => _layout.Freezer switch
    {
        FreezerKind.V1 => ReadFile(FreezerDir(), "freezer.state").Trim() == "FROZEN",
        FreezerKind.V2 => EventsSay(FreezerDir(), "frozen 1"),
        _ => false,
    };

    private string FreezerDir()
    {
        foreach (var (dir, v2) in _dirs)
        {
            if (_layout.Freezer == FreezerKind.V2 && v2) return dir;
            if (_layout.Freezer == FreezerKind.V1 && !v2 && File.Exists(Path.Combine(dir, "freezer.state"))) return dir;
        }
        throw new NotSupportedException("no cgroup freezer is available on this host");
    }

    private void SetFrozen(bool frozen)
    {
        var dir = FreezerDir();
        if (_layout.Freezer == FreezerKind.V1 && frozen)
        {
            // The v1 freezer can stay in FREEZING while tasks fork or sit in vfork waits (a shell loop
            // spawning commands does); as runc does, write FROZEN again, and thaw in between now and then.
            for (var attempt = 0; attempt < 200; attempt++)
            {
                Write(dir, "freezer.state", "FROZEN");
                if (WaitUntil(() => IsFrozen, TimeSpan.FromMilliseconds(50))) return;
                if (attempt % 10 == 9) Write(dir, "freezer.state", "THAWED");
            }
            throw new IOException($"cgroup {dir} did not freeze");
        }
        if (_layout.Freezer == FreezerKind.V1) Write(dir, "freezer.state", frozen ? "FROZEN" : "THAWED");
        else Write(dir, "cgroup.freeze", frozen ? "1" : "0");
        // Freezing completes asynchronously (v1 passes through FREEZING; v2 reports in cgroup.events).
        if (!WaitUntil(() => IsFrozen == frozen, TimeSpan.FromSeconds(10)))
            throw new IOException($"cgroup {dir} did not {(frozen ? "freeze" : "thaw")}");
    }

    /// <summary>
    /// SIGKILLs every process in the group: v2's cgroup.kill where there is a v2 group (atomic against
    /// forks), else freeze, signal each, thaw, until the group is empty.
    /// </summary>
    public void KillAll()
    {
        foreach (var (dir, v2) in _dirs)
            if (v2 && File.Exists(Path.Combine(dir, "cgroup.kill")) && Directory.Exists(dir))
            {
                Write(dir, "cgroup.kill", "1");
                break;
            }
        var frozenHere = false;
        for (var round = 0; round < 100 && Processes().Count > 0; round++)
        {
            if (_layout.Freezer == FreezerKind.V1 && !frozenHere)
            {
                try { Write(FreezerDir(), "freezer.state", "FROZEN"); frozenHere = true; }
                catch (IOException) { }
            }
            foreach (var pid in Processes()) Libc.Proc.Kill(pid, Libc.Proc.SIGKILL);
            if (frozenHere) { Write(FreezerDir(), "freezer.state", "THAWED"); frozenHere = false; }
            WaitUntil(() => Processes().Count == 0, TimeSpan.FromMilliseconds(200));
        }
    }

    /// <summary>Kills what is left and removes the group from every hierarchy. Safe to call twice.</summary>
    public void Remove()
    {
        if (_dirs.TrueForAll(d => !Directory.Exists(d.Dir))) return;
        KillAll();
        foreach (var (dir, _) in _dirs)
        {
            // rmdir fails with EBUSY for a moment after the last task exits; retry briefly.
            WaitUntil(() =>
            {
                try { if (Directory.Exists(dir)) Directory.Delete(dir); return true; }
                catch (IOException) { return false; }
            }, TimeSpan.FromSeconds(5));
            if (Directory.Exists(dir)) throw new IOException($"cannot remove cgroup {dir}");
        }
    }

    /// <summary>Domain cgroups an instance left behind (for cleanup after a crash), in any hierarchy.</summary>
    public static IReadOnlyList<string> FindLeftovers(CgroupLayout layout, KernelNames names)
    {
        var found = new List<string>();
        foreach (var (root, _) in layout.Hierarchies())
        {
            var parent = Path.Combine(root, names.CgroupParent);
            if (Directory.Exists(parent)) found.AddRange(Directory.GetDirectories(parent));
        }
        return found;
    }

    /// <summary>Removes every domain cgroup of an instance, killing their processes, and the instance's folders.</summary>
    public static void RemoveLeftovers(CgroupLayout layout, KernelNames names)
    {
        var byName = new Dictionary<string, List<(string, bool)>>();
        foreach (var (root, v2) in layout.Hierarchies())
        {
            var parent = Path.Combine(root, names.CgroupParent);
            if (!Directory.Exists(parent)) continue;
            foreach (var dir in Directory.GetDirectories(parent))
            {
                var name = Path.GetFileName(dir);
                if (!byName.TryGetValue(name, out var list)) byName[name] = list = [];
                list.Add((dir, v2));
            }
        }
        foreach (var dirs in byName.Values) new DomainCgroup(layout, dirs).Remove();
        foreach (var (root, _) in layout.Hierarchies())
        {
            try { Directory.Delete(Path.Combine(root, names.CgroupParent)); }
            catch (IOException) { }
        }
    }

    private static bool EventsSay(string dir, string line)
    {
        foreach (var l in File.ReadAllLines(Path.Combine(dir, "cgroup.events")))
            if (l.Trim() == line) return true;
        return false;
    }

    private static List<int> ReadPids(string dir)
    {
        var pids = new List<int>();
        foreach (var l in File.ReadAllLines(Path.Combine(dir, "cgroup.procs")))
            if (int.TryParse(l, NumberStyles.None, CultureInfo.InvariantCulture, out var pid)) pids.Add(pid);
        return pids;
    }

    private static string ReadFile(string dir, string file) => File.ReadAllText(Path.Combine(dir, file));

    private static void Write(string dir, string file, string value)
    {
        try { File.WriteAllText(Path.Combine(dir, file), value); }
        catch (IOException e) { throw new IOException($"cannot write '{value}' to {Path.Combine(dir, file)}: {e.Message}", e); }
    }

    private static void TryWrite(string dir, string file, string value)
    {
        if (!File.Exists(Path.Combine(dir, file))) return;
        try { File.WriteAllText(Path.Combine(dir, file), value); }
        catch (IOException) { }
    }

    private static bool WaitUntil(Func<bool> done, TimeSpan limit)
    {
        var deadline = Environment.TickCount64 + (long)limit.TotalMilliseconds;
        while (true)
        {
            if (done()) return true;
            if (Environment.TickCount64 > deadline) return false;
            Thread.Sleep(1);
        }
    }
}
