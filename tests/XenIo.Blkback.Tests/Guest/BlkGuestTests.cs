using System.Diagnostics;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Domains.Cgroups;
using XenIo.Hypervisor.Domains.Hyperd;
using XenIo.Hypervisor.Domains.Spawn;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;
using XenIo.Hypervisor.Store.Transports;
using XenIo.Tests;
using Xunit;
using Xunit.Abstractions;

namespace XenIo.Blkback.Tests.Guest;

/// <summary>
/// A real guest (the agent next to the tests, spawned by hyperd's DomainManager) whose blkfront serves its
/// disk through FUSE and a loop device: the guest's own tools make and use an ext4 file system on it, and
/// the host's e2fsck finds the image clean afterwards.
/// </summary>
public sealed class BlkGuestTests(ITestOutputHelper output)
{
    [SkippableFact]
    public async Task Mkfs_mount_write_sync_umount_in_a_guest_leaves_an_image_e2fsck_finds_clean()
    {
        Requires.Root("spawns a guest and attaches a loop device");
        Requires.Tool("unshare");
        Requires.Tool("mkfs.ext4");
        var e2fsck = Requires.Tool("e2fsck");
        var debugfs = Requires.Tool("debugfs");
        Skip.IfNot(File.Exists("/dev/fuse") && File.Exists("/dev/loop-control"), "needs /dev/fuse and /dev/loop-control");

        var dir = Path.Combine(Path.GetTempPath(), "xenio-blkguest-" + Guid.NewGuid().ToString("N")[..10]);
        Directory.CreateDirectory(dir);
        var image = Path.Combine(dir, "guest.img");
        using (var f = new FileStream(image, FileMode.Create)) f.SetLength(64L << 20);
        var names = new KernelNames($"t{Environment.ProcessId % 100000}bg");
        var layout = CgroupLayout.Detect();
        using var host = new CoreHost(dir, budgetPages: 1L << 18);
        var daemon = new Xenstored(mapper: new XenstoreDomainMapper(host));
        await using var listener = new XenstoreSocketListener(daemon, XenstoreSocketListener.PathUnder(dir));
        await using var dom0 = await XenstoreClient.ConnectAsync(listener.SocketPath);
        var manager = new DomainManager(host, dom0, new AgentSpawner(layout, names), new DomainManagerOptions
        {
            AgentCommand = AgentSpawner.DefaultAgentCommand(),
            HiddenPaths = [dir],
            LogDirectory = dir,
            StopTimeoutMs = 2000,
        });
        Process? blkback = null;
        var blkbackLog = new System.Text.StringBuilder();
        try
        {
            blkback = StartBlkback(dir, blkbackLog);
            const string script = """
                set -e
                i=0; while [ ! -e /run/xenio/vbd/xvda ]; do i=$((i+1)); [ $i -lt 300 ] || exit 90; sleep 0.1; done
                mkfs.ext4 -q -F /run/xenio/vbd/xvda
                mkdir -p /tmp/d
                mount /run/xenio/vbd/xvda /tmp/d
                echo hello from the guest > /tmp/d/hello.txt
                dd if=/dev/urandom of=/tmp/d/blob bs=1M count=8 status=none
                sha256sum /tmp/d/blob | cut -d' ' -f1 > /tmp/d/blob.sha256
                sync
                umount /tmp/d
                """;
            var d = await manager.CreateAsync(new DomainConfig
            {
                Name = "disk", MemoryMiB = 128, Init = ["/bin/sh", "-c", script],
                Disks = [new DiskConfig { Target = image, Vdev = "xvda", VirtualDevice = 51712 }],
            });
            var exit = await d.Agent!.Exited.WaitAsync(TimeSpan.FromSeconds(120));
            output.WriteLine(Read(Path.Combine(dir, "disk.log")));
            Assert.Equal(0, exit.Shutdown?.Value);
            await d.Settled.WaitAsync(TimeSpan.FromSeconds(30));

            // The domain is gone, its vbd removed: blkback has let go of the image. The host checks it.
            var (code, fsck) = Run(e2fsck, "-fn", image);
            output.WriteLine(fsck);
            Assert.Equal(0, code);
            var (_, hello) = Run(debugfs, "-R", "cat /hello.txt", image);
            Assert.Contains("hello from the guest", hello);
        }
        catch
        {
            output.WriteLine(Read(Path.Combine(dir, "disk.log")));
            lock (blkbackLog) output.WriteLine(blkbackLog.ToString());
            throw;
        }
        finally
        {
            await manager.DisposeAsync();
            if (blkback is { HasExited: false }) { blkback.Kill(); blkback.WaitForExit(); }
            blkback?.Dispose();
            foreach (var ns in NetnsNames.List(names.Prefix)) NetnsNames.Detach(ns);
            DomainCgroup.RemoveLeftovers(layout, names);
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
        }
    }

    [SkippableFact]
    public async Task A_guest_writing_its_disk_through_FUSE_rides_out_a_blkback_SIGKILL_and_restart()
    {
        Requires.Root("spawns a guest and attaches a loop device");
        Requires.Tool("unshare");
        Requires.Tool("cmp");
        Skip.IfNot(File.Exists("/dev/fuse") && File.Exists("/dev/loop-control"), "needs /dev/fuse and /dev/loop-control");

        var dir = Path.Combine(Path.GetTempPath(), "xenio-blkguest-" + Guid.NewGuid().ToString("N")[..10]);
        Directory.CreateDirectory(dir);
        var image = Path.Combine(dir, "guest.img");
        using (var f = new FileStream(image, FileMode.Create)) f.SetLength(64L << 20);
        var names = new KernelNames($"t{Environment.ProcessId % 100000}br");
        var layout = CgroupLayout.Detect();
        using var host = new CoreHost(dir, budgetPages: 1L << 18);
        var daemon = new Xenstored(mapper: new XenstoreDomainMapper(host));
        await using var listener = new XenstoreSocketListener(daemon, XenstoreSocketListener.PathUnder(dir));
        await using var dom0 = await XenstoreClient.ConnectAsync(listener.SocketPath);
        var manager = new DomainManager(host, dom0, new AgentSpawner(layout, names), new DomainManagerOptions
        {
            AgentCommand = AgentSpawner.DefaultAgentCommand(),
            HiddenPaths = [dir],
            LogDirectory = dir,
            StopTimeoutMs = 2000,
        });
        Process? blkback = null;
        var blkbackLog = new System.Text.StringBuilder();
        var agentLog = Path.Combine(dir, "rider.log");
        try
        {
            blkback = StartBlkback(dir, blkbackLog);
            // Write 2 MiB chunks through the loop device (direct I/O, synced) and read each back, for a while.
            const string script = """
                set -e
                i=0; while [ ! -e /run/xenio/vbd/xvda ]; do i=$((i+1)); [ $i -lt 300 ] || exit 90; sleep 0.1; done
                dd if=/dev/urandom of=/tmp/chunk bs=1M count=2 status=none
                n=0
                while [ $n -lt 300 ]; do
                  dd if=/tmp/chunk of=/run/xenio/vbd/xvda bs=1M seek=$((n % 30 * 2)) oflag=direct conv=fsync,notrunc status=none
                  dd if=/run/xenio/vbd/xvda of=/tmp/back bs=1M skip=$((n % 30 * 2)) count=2 iflag=direct status=none
                  cmp -s /tmp/chunk /tmp/back || exit 91
                  n=$((n+1))
                done
                """;
            var d = await manager.CreateAsync(new DomainConfig
            {
                Name = "rider", MemoryMiB = 128, Init = ["/bin/sh", "-c", script],
                Disks = [new DiskConfig { Target = image, Vdev = "xvda", VirtualDevice = 51712 }],
            });
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (!Read(agentLog).Contains("/run/xenio/vbd/xvda", StringComparison.Ordinal) && DateTime.UtcNow < deadline) await Task.Delay(20);
            await Task.Delay(300);
            Assert.False(d.Agent!.Exited.IsCompleted, "the guest finished before blkback could be killed");
            blkback.Kill();
            blkback.WaitForExit();
            blkback.Dispose();
            blkback = StartBlkback(dir, blkbackLog);

            var exit = await d.Agent.Exited.WaitAsync(TimeSpan.FromSeconds(120));
            output.WriteLine(Read(agentLog));
            Assert.Equal(0, exit.Shutdown?.Value);
            Assert.Contains("reconnected", Read(agentLog));
        }
        catch
        {
            output.WriteLine(Read(agentLog));
            lock (blkbackLog) output.WriteLine(blkbackLog.ToString());
            throw;
        }
        finally
        {
            await manager.DisposeAsync();
            if (blkback is { HasExited: false }) { blkback.Kill(); blkback.WaitForExit(); }
            blkback?.Dispose();
            foreach (var ns in NetnsNames.List(names.Prefix)) NetnsNames.Detach(ns);
            DomainCgroup.RemoveLeftovers(layout, names);
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
        }
    }

    private static string Read(string path)
    {
        try { return File.ReadAllText(path); } catch (IOException) { return ""; }
    }

    private static (int Code, string Output) Run(string tool, params string[] args)
    {
        var psi = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, stdout.Result + stderr);
    }

    private static Process StartBlkback(string dir, System.Text.StringBuilder log)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "xenio.dll"));
        foreach (var a in new[] { "blkback", "--run-dir", dir }) psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }
}
