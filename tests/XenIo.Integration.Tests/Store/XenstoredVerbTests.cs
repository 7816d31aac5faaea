using System.Diagnostics;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;
using Xunit;

namespace XenIo.Integration.Tests.Store;

/// <summary>`xenio xenstored` as its own process: serves the socket, stops on SIGTERM, keeps /xenio.</summary>
public class XenstoredVerbTests
{
    private static Process StartDaemon(string run, string state)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "xenio.dll"));
        foreach (var a in new[] { "xenstored", "--run-dir", run, "--state-dir", state }) psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    private static async Task<XenstoreClient> ConnectAsync(string socket, Process daemon)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            Assert.False(daemon.HasExited, "xenio xenstored exited");
            try
            {
                if (File.Exists(socket)) return await XenstoreClient.ConnectAsync(socket);
            }
            catch (System.Net.Sockets.SocketException) when (DateTime.UtcNow < deadline) { }
            if (DateTime.UtcNow > deadline) throw new TimeoutException("xenstored socket never appeared");
            await Task.Delay(50);
        }
    }

    private static async Task StopAsync(Process p)
    {
        using (var kill = Process.Start("kill", ["-TERM", p.Id.ToString()])) await kill.WaitForExitAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await p.WaitForExitAsync(cts.Token);
    }

    [Fact]
    public async Task RunsInTheForegroundAndKeepsXenioAcrossRestarts()
    {
        var root = Path.Combine(Path.GetTempPath(), "xenio-verb-" + Guid.NewGuid().ToString("N")[..12]);
        var run = Path.Combine(root, "run");
        var state = Path.Combine(root, "state");
        var socket = XenstoreSocketListenerPath(run);
        try
        {
            using (var daemon = StartDaemon(run, state))
            {
                await using (var c = await ConnectAsync(socket, daemon))
                {
                    await c.WriteAsync("/xenio/switch/br0/stp", "off");
                    Assert.Equal("off", await c.ReadAsync("/xenio/switch/br0/stp"));
                }
                if (!OperatingSystem.IsWindows())
                    Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(socket));
                await StopAsync(daemon);
                Assert.Equal(0, daemon.ExitCode);
            }
            Assert.True(File.Exists(Path.Combine(state, XenioPersistence.FileName)));
            using (var daemon = StartDaemon(run, state))
            {
                await using (var c = await ConnectAsync(socket, daemon))
                    Assert.Equal("off", await c.ReadAsync("/xenio/switch/br0/stp"));
                await StopAsync(daemon);
            }
        }
        finally
        {
            try { Directory.Delete(root, true); } catch (IOException) { }
        }
    }

    private static string XenstoreSocketListenerPath(string run) => Hypervisor.Store.Transports.XenstoreSocketListener.PathUnder(run);
}
