using XenIo.Hypervisor.Domains.Spawn;
using XenIo.Tests;
using Xunit;

namespace XenIo.Guest.Tests;

public class GuestNamespaceTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    [SkippableFact]
    public async Task InitSeesItsHostnamePidNamespaceAndNoHiddenDirectory()
    {
        Requires.Root();
        Requires.Tool("unshare");
        var names = GuestHarness.Names("ns");
        var hidden = $"/var/tmp/xenio-test-hidden-{Environment.ProcessId}";
        Directory.CreateDirectory(hidden);
        File.WriteAllText(Path.Combine(hidden, "secret"), "host only");
        try
        {
            var spawner = GuestHarness.Spawner(names);
            // Another guest runs alongside: nothing of it may be visible from the first.
            var (other, otherConsole) = await GuestHarness.StartAsync(spawner, "other", ["/bin/sleep", "600"]);
            await using var ___ = other;
            using var ____ = otherConsole;
            var (agent, console) = await GuestHarness.StartAsync(spawner, "web",
                ["/bin/sh", "-c", $"hostname; echo pid=$$; ls -A {hidden} 2>&1; echo end-ls; ls -A /run; echo end-run; tr '\\0' ' ' < /proc/1/cmdline; echo; echo procs=$(ls /proc | grep -c '^[0-9]'); echo unix=$(wc -l < /proc/net/unix); ls /run/netns 2>&1 | head -1; pgrep -c sleep; exit 3"],
                hidden: [hidden]);
            await using var _ = agent;
            using var __ = console;
            var output = await GuestHarness.ReadToEndAsync(console, Limit);
            var exit = await agent.Exited.WaitAsync(Limit);
            var lines = output.Split('\n');
            Assert.Equal("web", lines[0]);
            var pid = int.Parse(lines[1]["pid=".Length..]);
            Assert.InRange(pid, 2, 10);
            Assert.Equal(agent.InitPid, pid);
            Assert.DoesNotContain("secret", output);
            Assert.Equal("end-ls", lines[2]);
            Assert.Equal("end-run", lines[3]);
            Assert.Contains("xenio-guest", lines[4]);
            // Only the guest's own processes (agent, shell, the command substitution's children).
            Assert.InRange(int.Parse(lines[5]["procs=".Length..]), 2, 6);
            // dom0's Unix sockets live in the host's network namespace: the guest's table is empty.
            Assert.Equal("unix=1", lines[6]);
            Assert.Contains("No such file", lines[7]);
            Assert.Equal("0", lines[8]);
            Assert.Equal(0, exit.ExitCode);
            Assert.Equal(new AgentMessage(AgentMessageKind.Shutdown, 3, ShutdownReason.Poweroff), exit.Shutdown);
            Assert.Equal(ShutdownReason.Poweroff, exit.Reason);
            Assert.True(File.Exists(Path.Combine(hidden, "secret")), "the host's directory is untouched");
        }
        finally
        {
            GuestHarness.RemoveInstance(names);
            Directory.Delete(hidden, true);
        }
    }
}
