using System.Diagnostics;
using System.Net.Sockets;
using XenIo.Cli.Supervisor;
using XenIo.Tests;
using Xunit;

namespace XenIo.Integration.Tests.Blk;

/// <summary>`xenio up` runs blkback beside netback: it answers on blkback.sock, is restarted when killed, and `xenio down` stops it.</summary>
public sealed class BlkbackUpTests : IDisposable
{
    private readonly string _run = Directory.CreateTempSubdirectory("xenio-blkup-run-").FullName;
    private readonly string _logs = Directory.CreateTempSubdirectory("xenio-blkup-log-").FullName;

    private (int Code, string Output) Xenio(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "xenio.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["XENIO_INSTANCE"] = $"xbu{Environment.ProcessId % 100000}";
        psi.Environment["XENIO_LOG_DIR"] = _logs;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(3))) { p.Kill(true); throw new TimeoutException($"xenio {string.Join(' ', args)} hung"); }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    private static string CommandLine(int pid)
    {
        try { return File.ReadAllText($"/proc/{pid}/cmdline"); }
        catch (IOException) { return ""; }
        catch (UnauthorizedAccessException) { return ""; }
    }

    private int? BlkbackPid() =>
        Process.GetProcesses().Select(p => p.Id).FirstOrDefault(id => CommandLine(id).Contains($"xenio.dll\0blkback\0--run-dir\0{_run}", StringComparison.Ordinal)) is var pid and > 0 ? pid : null;

    private string Logs() => string.Join("\n", Directory.GetFiles(_logs).Select(f => $"== {f}\n{File.ReadAllText(f)}"));

    [SkippableFact]
    public async Task Up_starts_blkback_restarts_it_when_killed_and_down_stops_it()
    {
        Requires.Root();
        var up = Xenio("up", "--run-dir", _run);
        Assert.True(up.Code == 0, up.Output + Logs());
        var socket = Path.Combine(_run, "blkback.sock");
        try
        {
            Assert.True(await DaemonSupervisor.AnswersAsync(socket, default), "blkback.sock does not answer\n" + Logs());
            var first = BlkbackPid();
            Assert.NotNull(first);
            Process.GetProcessById(first.Value).Kill();
            int? again = null;
            for (int i = 0; i < 600 && (again is null || again == first); i++)
            {
                await Task.Delay(50);
                again = BlkbackPid();
            }
            Assert.True(again is not null && again != first, "blkback was not restarted\n" + Logs());
            for (int i = 0; i < 600 && !await DaemonSupervisor.AnswersAsync(socket, default); i++) await Task.Delay(50);
            Assert.True(await DaemonSupervisor.AnswersAsync(socket, default), "restarted blkback never answered\n" + Logs());
        }
        finally
        {
            var down = Xenio("down", "--run-dir", _run, "--timeout", "5");
            Assert.True(down.Code == 0, down.Output + Logs());
        }
        Assert.Null(BlkbackPid());
        Assert.False(File.Exists(socket));
    }

    public void Dispose()
    {
        if (BlkbackPid() is { } pid) try { Process.GetProcessById(pid).Kill(); } catch (ArgumentException) { }
        foreach (var p in Process.GetProcesses().Where(p => CommandLine(p.Id).Contains($"--run-dir\0{_run}", StringComparison.Ordinal)))
            try { p.Kill(); } catch (InvalidOperationException) { }
        try { Directory.Delete(_run, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        try { Directory.Delete(_logs, true); } catch (IOException) { }
    }
}
