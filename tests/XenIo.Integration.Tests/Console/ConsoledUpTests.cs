using System.Diagnostics;
using XenIo.Cli.Supervisor;
using XenIo.Tests;
using Xunit;

namespace XenIo.Integration.Tests.Consoles;

/// <summary><c>xenio up</c> runs consoled with the other daemons and restarts it when it dies.</summary>
public sealed class ConsoledUpTests : IDisposable
{
    private readonly string _run = Directory.CreateTempSubdirectory("xenio-cup-run-").FullName;
    private readonly string _logs = Directory.CreateTempSubdirectory("xenio-cup-log-").FullName;
    private readonly string _instance = $"xcu{Environment.ProcessId % 100000}";

    /// <summary>What <c>up --log-dir</c> names; the daemons must use it over the XENIO_LOG_DIR they inherited.</summary>
    private readonly string _upLogs = Directory.CreateTempSubdirectory("xenio-cup-uplog-").FullName;

    private (int Code, string Output) Xenio(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "xenio.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["XENIO_INSTANCE"] = _instance;
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

    private int? PidOf(string verb) =>
        Process.GetProcesses().Select(p => p.Id).FirstOrDefault(id => CommandLine(id).Contains($"xenio.dll\0{verb}\0--run-dir\0{_run}", StringComparison.Ordinal)) is var pid and > 0 ? pid : null;

    private string Logs() => string.Join("\n", Directory.GetFiles(_logs).Concat(Directory.GetFiles(_upLogs)).Select(f => $"== {f}\n{File.ReadAllText(f)}"));

    [SkippableFact]
    public async Task Up_starts_consoled_restarts_it_when_killed_and_down_stops_it()
    {
        Requires.Root();
        var socket = Path.Combine(_run, "consoled.sock");
        var up = Xenio("up", "--run-dir", _run, "--log-dir", _upLogs);
        Assert.True(up.Code == 0, up.Output + Logs());
        try
        {
            Assert.True(await DaemonSupervisor.AnswersAsync(socket, default), Logs());
            Assert.Contains($"logs in {Path.Combine(_upLogs, "console")}", File.ReadAllText(Path.Combine(_upLogs, "consoled.log")));
            var consoled = PidOf("consoled");
            Assert.NotNull(consoled);
            Process.GetProcessById(consoled.Value).Kill();
            int? restarted = null;
            for (int i = 0; i < 600 && (restarted is null || restarted == consoled || !await DaemonSupervisor.AnswersAsync(socket, default)); i++)
            {
                await Task.Delay(50);
                restarted = PidOf("consoled");
            }
            Assert.True(restarted is not null && restarted != consoled, "consoled was not restarted\n" + Logs());
            Assert.True(await DaemonSupervisor.AnswersAsync(socket, default), "restarted consoled never answered\n" + Logs());
            var list = Xenio("console", "--list", "--run-dir", _run);
            Assert.True(list.Code == 0, list.Output);
        }
        finally
        {
            var down = Xenio("down", "--run-dir", _run, "--timeout", "5");
            Assert.True(down.Code == 0, down.Output + Logs());
        }
        Assert.Null(PidOf("consoled"));
        Assert.False(File.Exists(socket));
    }

    public void Dispose()
    {
        foreach (var verb in new[] { "consoled", "netback", "hyperd" })
            if (PidOf(verb) is { } pid)
                try { Process.GetProcessById(pid).Kill(); } catch (ArgumentException) { } catch (InvalidOperationException) { }
        try { Directory.Delete(_run, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        try { Directory.Delete(_logs, true); } catch (IOException) { }
        try { Directory.Delete(_upLogs, true); } catch (IOException) { }
    }
}
