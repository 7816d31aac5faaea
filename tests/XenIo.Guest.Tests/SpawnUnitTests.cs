using System.Runtime.InteropServices;
using System.Text;
using XenIo.Hypervisor.Domains.Cgroups;
using XenIo.Hypervisor.Domains.Spawn;
using Xunit;

namespace XenIo.Guest.Tests;

public class AgentMessageTests
{
    [Theory]
    [InlineData("hello pid=4242", AgentMessageKind.Hello, 4242)]
    [InlineData("ready init=7", AgentMessageKind.Ready, 7)]
    [InlineData("shutdown poweroff exit=3", AgentMessageKind.Shutdown, 3)]
    [InlineData("shutdown reboot signal=9", AgentMessageKind.Shutdown, 9)]
    public void ParsesWhatTheAgentSends(string line, AgentMessageKind kind, int value)
    {
        Assert.True(AgentMessage.TryParse(Encoding.ASCII.GetBytes(line), out var m));
        Assert.Equal(kind, m.Kind);
        Assert.Equal(value, m.Value);
        Assert.Equal(line + "\n", m.Format());
    }

    [Theory]
    [InlineData("")]
    [InlineData("hello")]
    [InlineData("hello pid=")]
    [InlineData("hello pid=0")]
    [InlineData("hello pid=-5")]
    [InlineData("hello pid=99999999999")]
    [InlineData("hello pid=12 ")]
    [InlineData("hello  pid=12")]
    [InlineData("ready init=+3")]
    [InlineData("shutdown 3 exit=1")]
    [InlineData("shutdown poweroff exit=256")]
    [InlineData("shutdown poweroff signal=0")]
    [InlineData("shutdown bogus exit=0")]
    [InlineData("shutdown poweroff")]
    [InlineData("hello pid=1\u0001")]
    [InlineData("HELLO pid=1")]
    public void RejectsMalformedLines(string line) =>
        Assert.False(AgentMessage.TryParse(Encoding.Latin1.GetBytes(line), out _));

    [Fact]
    public void RejectsOverlongAndNonAsciiLines()
    {
        Assert.False(AgentMessage.TryParse(Encoding.ASCII.GetBytes("hello pid=1" + new string(' ', 80)), out _));
        Assert.False(AgentMessage.TryParse([0x68, 0xff, 0x20], out _));
    }

    [Fact]
    public void ExitWithoutReportedShutdownIsACrash()
    {
        Assert.Equal(ShutdownReason.Crash, new AgentExit(0, null, null).Reason);
        Assert.Equal(ShutdownReason.Crash, new AgentExit(null, 9, new AgentMessage(AgentMessageKind.Shutdown, 0)).Reason);
        Assert.Equal(ShutdownReason.Reboot, new AgentExit(0, null, new AgentMessage(AgentMessageKind.Shutdown, 0, ShutdownReason.Reboot)).Reason);
    }
}

public class KernelNamesTests
{
    [Theory]
    [InlineData("web", true)]
    [InlineData("db-1.example_2", true)]
    [InlineData("", false)]
    [InlineData(".hidden", false)]
    [InlineData("-x", false)]
    [InlineData("a/b", false)]
    [InlineData("..", false)]
    [InlineData("sp ace", false)]
    [InlineData("é", false)]
    public void DomainNamesMustBeSafeFileNames(string name, bool ok) => Assert.Equal(ok, KernelNames.IsValid(name));

    [Fact]
    public void InstancePrefixesKernelGlobalNames()
    {
        Assert.Equal("web", new KernelNames(null).Netns("web"));
        Assert.Equal("xenio", new KernelNames(null).CgroupParent);
        var lab = new KernelNames("lab");
        Assert.Equal("lab-web", lab.Netns("web"));
        Assert.Equal("xenio-lab", lab.CgroupParent);
        Assert.Throws<ArgumentException>(() => lab.Netns("../etc"));
        Assert.Throws<ArgumentException>(() => new KernelNames("a/b"));
        Assert.Equal(KernelNames.MaxNameLength, new string('a', 64).Length);
        Assert.False(KernelNames.IsValid(new string('a', 65)));
    }
}

public class CgroupLayoutTests
{
    [Fact]
    public void HybridHostUsesV1ControllersAndFreezerAndTheV2TreeForKill()
    {
        var dir = Directory.CreateTempSubdirectory("xenio-cg");
        try
        {
            var unified = Directory.CreateDirectory(Path.Combine(dir.FullName, "unified")).FullName;
            File.WriteAllText(Path.Combine(unified, "cgroup.controllers"), "hugetlb\n");
            var mounts = Path.Combine(dir.FullName, "mounts");
            File.WriteAllText(mounts, $"""
                tmpfs /sys/fs/cgroup tmpfs rw 0 0
                cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
                cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
                cgroup /sys/fs/cgroup/freezer cgroup rw,relatime,freezer 0 0
                cgroup2 {unified} cgroup2 rw,relatime 0 0
                """);
            var layout = CgroupLayout.Detect(mounts);
            Assert.Equal(unified, layout.UnifiedRoot);
            Assert.Equal(("/sys/fs/cgroup/memory", false), layout.Memory);
            Assert.Equal(("/sys/fs/cgroup/cpu", false), layout.Cpu);
            Assert.Equal(FreezerKind.V1, layout.Freezer);
            Assert.Equal(4, layout.HierarchyCount);
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public void PureV2HostUsesOnlyTheUnifiedTree()
    {
        var dir = Directory.CreateTempSubdirectory("xenio-cg");
        try
        {
            File.WriteAllText(Path.Combine(dir.FullName, "cgroup.controllers"), "cpuset cpu io memory pids\n");
            var mounts = Path.Combine(dir.FullName, "mounts");
            File.WriteAllText(mounts, $"cgroup2 {dir.FullName} cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n");
            var layout = CgroupLayout.Detect(mounts);
            Assert.Equal((dir.FullName, true), layout.Memory);
            Assert.Equal((dir.FullName, true), layout.Cpu);
            Assert.Equal(FreezerKind.V2, layout.Freezer);
            Assert.Equal(1, layout.HierarchyCount);
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public void LimitsFollowMemoryMaxmemAndVcpus()
    {
        var l = CgroupLimits.From(new XenIo.Hypervisor.Domains.DomainConfig { Name = "x", MemoryMiB = 256, MaxMemMiB = 512, Vcpus = 2 });
        Assert.Equal(512L << 20, l.MemoryBytes);
        Assert.Equal(2, l.Vcpus);
    }
}

public class SpawnCommandTests
{
    [DllImport("libc", SetLastError = true)]
    private static extern int waitpid(int pid, out int status, int options);

    [Fact]
    public void ChildGetsExactlyThePlacedDescriptorsAndDefaultSignals()
    {
        var outPath = Path.GetTempFileName();
        var extraPath = Path.GetTempFileName();
        try
        {
            int pid;
            using (var output = new FileStream(outPath, FileMode.Create, FileAccess.Write))
            using (var extra = new FileStream(extraPath, FileMode.Open, FileAccess.Read))
            {
                var spawn = new SpawnCommand("/bin/sh",
                    ["sh", "-c", "ls /proc/self/fd | sort -n | tr '\\n' ' '; echo; readlink /proc/$$/fd/5; echo $FOO; pwd"],
                    ["FOO=bar"]) { WorkingDirectory = "/" };
                spawn.Open(0, "/dev/null", 0).Inherit(output.SafeFileHandle, 1).Inherit(output.SafeFileHandle, 2).Inherit(extra.SafeFileHandle, 5);
                pid = spawn.Start();
            }
            Assert.Equal(pid, waitpid(pid, out var status, 0));
            Assert.Equal(0, status);
            var lines = File.ReadAllLines(outPath);
            // ls inherits the shell's 0 2 5, has the pipe as 1 and the directory it lists as 3.
            Assert.Equal("0 1 2 3 5", lines[0].Trim());
            Assert.Equal(extraPath, lines[1]);
            Assert.Equal("bar", lines[^2]);
            Assert.Equal("/", lines[^1]);

            // The signal state as the spawned program itself got it (a shell blocks signals around its forks).
            using (var output = new FileStream(outPath, FileMode.Create, FileAccess.Write))
            {
                var grep = new SpawnCommand("/bin/grep", ["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"], [])
                    .Inherit(output.SafeFileHandle, 1);
                pid = grep.Start();
            }
            Assert.Equal(pid, waitpid(pid, out status, 0));
            lines = File.ReadAllLines(outPath);
            Assert.Equal("SigBlk:\t0000000000000000", lines.First(l => l.StartsWith("SigBlk", StringComparison.Ordinal)));
            // SIGPIPE (ignored by the runtime) is back to default.
            var ign = Convert.ToUInt64(lines.First(l => l.StartsWith("SigIgn", StringComparison.Ordinal))[8..], 16);
            Assert.Equal(0UL, ign & (1UL << 12));
        }
        finally
        {
            File.Delete(outPath);
            File.Delete(extraPath);
        }
    }

    [Fact]
    public void MissingProgramIsASpawnError()
    {
        var e = Assert.Throws<SpawnException>(() => new SpawnCommand("/nonexistent/xenio", ["x"], []).Start());
        Assert.Equal(2, e.Errno);
    }

    [Fact]
    public void PlacingTwoDescriptorsAtOneNumberIsRefused()
    {
        var s = new SpawnCommand("/bin/true", ["true"], []).Open(0, "/dev/null", 0);
        Assert.Throws<ArgumentException>(() => s.Open(0, "/dev/null", 0));
    }
}
