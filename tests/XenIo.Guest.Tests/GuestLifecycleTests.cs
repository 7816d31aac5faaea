using System.Diagnostics;
using System.Text;
using XenIo.Hypervisor.Domains.Cgroups;
using XenIo.Hypervisor.Domains.Spawn;
using XenIo.Tests;
using Xunit;

namespace XenIo.Guest.Tests;

/// <summary>Real agents in real namespaces: network name, interactive console, crash, cgroup limits, freezer, leaks.</summary>
[Collection("guests")]
public class GuestLifecycleTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    private static void Needs()
    {
        Requires.Root();
        Requires.Tool("unshare");
        Requires.Tool("ip");
    }

    private static string Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit();
        return output;
    }

    private static void AssertNothingLeft(KernelNames names, CgroupLayout layout)
    {
        Assert.Empty(NetnsNames.List(names.Prefix));
        Assert.Empty(DomainCgroup.FindLeftovers(layout, names));
        DomainCgroup.RemoveLeftovers(layout, names);
    }

    [SkippableFact]
    public async Task NamedNetnsShowsOnlyLoopbackUpAndInteractiveShellAnswers()
    {
        Needs();
        var names = GuestHarness.Names("if");
        try
        {
            var spawner = GuestHarness.Spawner(names);
            var (agent, console) = await GuestHarness.StartAsync(spawner, "web", ["/bin/sh", "-i"]);
            using var _ = console;
            try
            {
                Assert.Equal(names.Netns("web"), agent.NetnsName);
                var links = Run("ip", "netns", "exec", names.Netns("web"), "ip", "-o", "link");
                var lines = links.Split('\n', StringSplitOptions.RemoveEmptyEntries);
                Assert.Single(lines);
                Assert.Contains(": lo:", lines[0]);
                Assert.Contains(",UP", lines[0]);

                await console.SendAsync(Encoding.ASCII.GetBytes("echo answer=$((6*7)); tty\n"));
                var output = await GuestHarness.ReadUntilAsync(console, "/dev/pts/0\n", Limit);
                Assert.Contains("answer=42\n", output);
                await console.SendAsync(Encoding.ASCII.GetBytes("exit 5\n"));
                var exit = await agent.Exited.WaitAsync(Limit);
                Assert.Equal(0, exit.ExitCode);
                Assert.Equal(new AgentMessage(AgentMessageKind.Shutdown, 5, ShutdownReason.Poweroff), exit.Shutdown);
            }
            finally
            {
                await agent.DestroyAsync();
            }
            AssertNothingLeft(names, CgroupLayout.Detect());
        }
        finally
        {
            GuestHarness.RemoveInstance(names);
        }
    }

    [SkippableFact]
    public async Task AgentKilledWithSigkillIsACrashAndLeavesNothingAfterDestroy()
    {
        Needs();
        var names = GuestHarness.Names("kill");
        try
        {
            var layout = CgroupLayout.Detect();
            var spawner = GuestHarness.Spawner(names);
            var (agent, console) = await GuestHarness.StartAsync(spawner, "victim", ["/bin/sh", "-c", "sleep 1000 & sleep 1000"]);
            using var _ = console;
            var agentPid = agent.AgentPid;
            Assert.True(File.Exists(NetnsNames.PathOf(names.Netns("victim"))));
            Assert.True(agent.Cgroup.Processes().Count >= 3);
            Assert.True(agent.Kill());
            var exit = await agent.Exited.WaitAsync(Limit);
            // unshare passes a signal death on as a signal on most versions; 2.38 (Debian 12) trips over its own
            // sigprocmask and exits 1 instead. Either way no shutdown was reported: a crash.
            Assert.True(exit.Signal == 9 || exit.ExitCode is > 0, exit.ToString());
            Assert.Null(exit.Shutdown);
            Assert.Equal(ShutdownReason.Crash, exit.Reason);
            await agent.DestroyAsync();
            Assert.False(Directory.Exists($"/proc/{agentPid}"));
            foreach (var dir in agent.Cgroup.Directories) Assert.False(Directory.Exists(dir));
            AssertNothingLeft(names, layout);
        }
        finally
        {
            GuestHarness.RemoveInstance(names);
        }
    }

    [SkippableFact]
    public async Task SigtermStopsInitGracefullyThenByForce()
    {
        Needs();
        var names = GuestHarness.Names("term");
        try
        {
            var spawner = GuestHarness.Spawner(names);
            // An interactive shell ignores SIGTERM: the agent must fall back to SIGKILL after the timeout.
            var (agent, console) = await GuestHarness.StartAsync(spawner, "stubborn", ["/bin/sh", "-i"], stopTimeoutMs: 200);
            using var _ = console;
            Assert.True(agent.Terminate());
            var exit = await agent.Exited.WaitAsync(Limit);
            Assert.Equal(0, exit.ExitCode);
            Assert.Equal(new AgentMessage(AgentMessageKind.Shutdown, 9, ShutdownReason.Poweroff, Signaled: true), exit.Shutdown);
            await agent.DestroyAsync();
            AssertNothingLeft(names, CgroupLayout.Detect());
        }
        finally
        {
            GuestHarness.RemoveInstance(names);
        }
    }

    [SkippableFact]
    public async Task MemoryLimitIsEnforced()
    {
        Needs();
        var names = GuestHarness.Names("mem");
        try
        {
            var layout = CgroupLayout.Detect();
            Skip.If(layout.Memory is null, "no memory controller");
            var spawner = GuestHarness.Spawner(names);
            const long limit = 96L * 1024 * 1024;
            // dd with a 300 MB block fills a 300 MB buffer: the cgroup's OOM killer must stop it.
            var (agent, console) = await GuestHarness.StartAsync(spawner, "small",
                ["/bin/sh", "-c", "dd if=/dev/zero of=/dev/null bs=300M count=1 2>/dev/null; echo status=$?"],
                limits: new CgroupLimits(limit, 1));
            using var _ = console;
            await using var __ = agent;
            var memDir = agent.Cgroup.Directories.First(d => d.StartsWith(layout.Memory!.Value.Root + "/", StringComparison.Ordinal));
            var file = layout.Memory!.Value.V2 ? "memory.max" : "memory.limit_in_bytes";
            Assert.Equal(limit, long.Parse(File.ReadAllText(Path.Combine(memDir, file)).Trim()));
            if (layout.Cpu is { } cpu)
            {
                var cpuDir = agent.Cgroup.Directories.First(d => d.StartsWith(cpu.Root + "/", StringComparison.Ordinal));
                var quota = cpu.V2 ? File.ReadAllText(Path.Combine(cpuDir, "cpu.max")).Split(' ')[0] : File.ReadAllText(Path.Combine(cpuDir, "cpu.cfs_quota_us"));
                Assert.Equal("100000", quota.Trim());
            }
            var output = await GuestHarness.ReadToEndAsync(console, Limit);
            Assert.Contains("status=137", output);
        }
        finally
        {
            GuestHarness.RemoveInstance(names);
        }
    }

    public static TheoryData<FreezerKind> Freezers() => [FreezerKind.V1, FreezerKind.V2];

    [SkippableTheory]
    [MemberData(nameof(Freezers))]
    public async Task FrozenGuestStopsAdvancingAndThawedGuestResumes(FreezerKind kind)
    {
        Needs();
        var detected = CgroupLayout.Detect();
        Skip.If(kind == FreezerKind.V1 && !detected.V1Roots.ContainsKey("freezer"), "no v1 freezer on this host");
        Skip.If(kind == FreezerKind.V2 && detected.UnifiedRoot is null, "no cgroup v2 tree on this host");
        var layout = detected with { Freezer = kind };
        var names = GuestHarness.Names("fz" + (int)kind);
        try
        {
            var spawner = new AgentSpawner(layout, names);
            var (agent, console) = await GuestHarness.StartAsync(spawner, "counter",
                ["/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; done"]);
            using var _ = console;
            await using var __ = agent;
            // The guest's /tmp is its own tmpfs: read it through the agent's root.
            var counter = $"/proc/{agent.AgentPid}/root/tmp/count";
            await WaitUntil(() => ReadCount(counter) > 10);

            agent.Cgroup.Freeze();
            Assert.True(agent.Cgroup.IsFrozen);
            var state = kind == FreezerKind.V1
                ? File.ReadAllText(Path.Combine(agent.Cgroup.Directories.First(d => File.Exists(Path.Combine(d, "freezer.state"))), "freezer.state")).Trim()
                : File.ReadAllLines(Path.Combine(agent.Cgroup.Directories.First(d => File.Exists(Path.Combine(d, "cgroup.freeze"))), "cgroup.events")).First(l => l.StartsWith("frozen", StringComparison.Ordinal));
            Assert.Equal(kind == FreezerKind.V1 ? "FROZEN" : "frozen 1", state);
            var frozenAt = ReadCount(counter);
            // Every process of the domain is stopped in the freezer (not merely slow).
            foreach (var pid in agent.Cgroup.Processes())
            {
                var status = File.ReadAllText($"/proc/{pid}/stat");
                Assert.Contains(status[(status.LastIndexOf(')') + 2)..][0], "SDt");
            }
            Assert.Equal(frozenAt, ReadCount(counter));

            agent.Cgroup.Thaw();
            Assert.False(agent.Cgroup.IsFrozen);
            await WaitUntil(() => ReadCount(counter) > frozenAt);
            var exit = await agent.DestroyAsync();
            Assert.Equal(ShutdownReason.Crash, exit.Reason);
            AssertNothingLeft(names, layout);
        }
        finally
        {
            GuestHarness.RemoveInstance(names);
        }
    }

    [SkippableFact]
    public async Task TwentyGuestsStartedAndStoppedLeaveNothingBehind()
    {
        Needs();
        var names = GuestHarness.Names("many");
        try
        {
            var layout = CgroupLayout.Detect();
            var spawner = GuestHarness.Spawner(names);
            var guests = new List<(GuestAgent Agent, System.Net.Sockets.Socket Console)>();
            try
            {
                for (var i = 0; i < 20; i++)
                    guests.Add(await GuestHarness.StartAsync(spawner, $"g{i}", ["/bin/sh", "-c", "exec sleep 1000"], stopTimeoutMs: 100));
                Assert.Equal(20, NetnsNames.List(names.Prefix).Count);
                Assert.Equal(20, DomainCgroup.FindLeftovers(layout, names).Count / layout.HierarchyCount);
                var pids = guests.Select(g => g.Agent.AgentPid).ToList();
                foreach (var (agent, _) in guests) agent.Terminate();
                foreach (var (agent, _) in guests)
                {
                    var exit = await agent.Exited.WaitAsync(Limit);
                    Assert.Equal(ShutdownReason.Poweroff, exit.Reason);
                }
                foreach (var (agent, _) in guests) await agent.DestroyAsync();
                foreach (var pid in pids) Assert.False(Directory.Exists($"/proc/{pid}"));
            }
            finally
            {
                foreach (var (agent, console) in guests)
                {
                    await agent.DestroyAsync();
                    console.Dispose();
                }
            }
            AssertNothingLeft(names, layout);
        }
        finally
        {
            GuestHarness.RemoveInstance(names);
        }
    }

    [SkippableFact]
    public async Task UsernsGuestRootIsAnUnprivilegedHostUser()
    {
        Needs();
        Requires.Tool("setpriv");
        var names = GuestHarness.Names("uns");
        var hidden = $"/var/tmp/xenio-test-hidden-uns-{Environment.ProcessId}";
        Directory.CreateDirectory(hidden);
        File.WriteAllText(Path.Combine(hidden, "secret"), "host only");
        try
        {
            var spawner = GuestHarness.Spawner(names);
            var (agent, console) = await GuestHarness.StartAsync(spawner, "jail",
                ["/bin/sh", "-c", $"id -u; hostname; cat /proc/self/uid_map; echo x > /etc/xenio-userns-probe 2>/dev/null; echo write=$?; ls -A {hidden}; echo end"],
                hidden: [hidden], userns: true);
            using var _ = console;
            await using var __ = agent;
            var output = await GuestHarness.ReadToEndAsync(console, Limit);
            var lines = output.Split('\n');
            Assert.Equal("0", lines[0]);
            Assert.Equal("jail", lines[1]);
            var map = lines[2].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal("0", map[0]);
            Assert.NotEqual("0", map[1]);
            Assert.Contains("write=", output);
            Assert.DoesNotContain("write=0", output);
            Assert.False(File.Exists("/etc/xenio-userns-probe"));
            Assert.DoesNotContain("secret", output);
            Assert.Contains("\nend\n", output);
            var exit = await agent.Exited.WaitAsync(Limit);
            Assert.Equal(ShutdownReason.Poweroff, exit.Reason);
        }
        finally
        {
            GuestHarness.RemoveInstance(names);
            Directory.Delete(hidden, true);
        }
    }

    private static long ReadCount(string path)
    {
        try { return long.TryParse(File.ReadAllText(path).Trim(), out var n) ? n : 0; }
        catch (IOException) { return 0; }
    }

    private static async Task WaitUntil(Func<bool> done)
    {
        var deadline = DateTime.UtcNow + Limit;
        while (!done())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not reached");
            await Task.Delay(10);
        }
    }
}

[Collection("guests")]
public class DomainLeftoverTests
{
    [SkippableFact]
    public async Task CleanupAfterACrashedHyperdRemovesAgentsCgroupsAndNames()
    {
        Requires.Root();
        Requires.Tool("unshare");
        var names = GuestHarness.Names("left");
        var layout = CgroupLayout.Detect();
        try
        {
            var spawner = GuestHarness.Spawner(names);
            var (a, ca) = await GuestHarness.StartAsync(spawner, "a", ["/bin/sleep", "600"]);
            var (b, cb) = await GuestHarness.StartAsync(spawner, "b", ["/bin/sh", "-c", "sleep 600 & exec sleep 600"]);
            using var _ = ca;
            using var __ = cb;
            var pids = new[] { a.AgentPid, b.AgentPid, a.LauncherPid, b.LauncherPid };
            // A second domain of a running name is refused, not merged into its cgroup.
            await Assert.ThrowsAsync<InvalidOperationException>(() => GuestHarness.StartAsync(spawner, "a", ["/bin/true"]));

            // As if hyperd had died: nothing is torn down by the spawner; cleanup finds it all.
            Assert.Equal(["a", "b"], DomainLeftovers.Find(layout, names).Order());
            Assert.Equal(["a", "b"], DomainLeftovers.Remove(layout, names).Order());
            await Task.WhenAll(a.Exited, b.Exited).WaitAsync(TimeSpan.FromSeconds(60));
            // Dead: gone, or a zombie of the host's init when the cgroup kill took launcher and agent at
            // once (this machine's PID 1 does not reap; a real init does).
            foreach (var pid in pids) Assert.True(IsDead(pid), $"pid {pid} survived cleanup");
            Assert.Empty(DomainLeftovers.Find(layout, names));
            Assert.Empty(NetnsNames.List(names.Prefix));
            Assert.Equal(ShutdownReason.Crash, (await a.Exited).Reason);
        }
        finally
        {
            GuestHarness.RemoveInstance(names);
        }
    }

    private static bool IsDead(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[stat.LastIndexOf(')') + 2] == 'Z';
        }
        catch (IOException) { return true; }
    }
}
