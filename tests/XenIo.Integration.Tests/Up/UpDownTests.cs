using System.Diagnostics;
using XenIo.Cli.Supervisor;
using XenIo.Tests;
using Xunit;

namespace XenIo.Integration.Tests.Up;

/// <summary>`xenio up` / `xenio down` as real processes in a temporary run and log directory.</summary>
public sealed class UpDownTests : IDisposable
{
    private readonly string _run = Directory.CreateTempSubdirectory("xenio-up-run-").FullName;
    private readonly string _logs = Directory.CreateTempSubdirectory("xenio-up-log-").FullName;
    private readonly string _instance = $"xut{Environment.ProcessId % 100000}";

    private (int Code, string Output) Xenio(IReadOnlyDictionary<string, string>? env, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "xenio.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["XENIO_INSTANCE"] = _instance;
        psi.Environment["XENIO_LOG_DIR"] = _logs;
        foreach (var (k, v) in env ?? new Dictionary<string, string>()) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(3))) { p.Kill(true); throw new TimeoutException($"xenio {string.Join(' ', args)} hung"); }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    private (int Code, string Output) Xenio(params string[] args) => Xenio(null, args);

    private int[] DaemonPids() =>
        [.. Process.GetProcesses().Where(p => CommandLine(p.Id).Contains($"--run-dir\0{_run}", StringComparison.Ordinal)).Select(p => p.Id)];

    private static string CommandLine(int pid)
    {
        try { return File.ReadAllText($"/proc/{pid}/cmdline"); }
        catch (IOException) { return ""; }
        catch (UnauthorizedAccessException) { return ""; }
    }

    private int? PidOf(string verb) =>
        Process.GetProcesses().Select(p => p.Id).FirstOrDefault(id => CommandLine(id).Contains($"xenio.dll\0{verb}\0--run-dir\0{_run}", StringComparison.Ordinal)) is var pid and > 0 ? pid : null;

    private string Logs() => string.Join("\n", Directory.GetFiles(_logs).Select(f => $"== {f}\n{File.ReadAllText(f)}"));

    [SkippableFact]
    public async Task Up_serves_both_sockets_restarts_killed_daemons_and_down_stops_everything()
    {
        Requires.Root();
        var up = Xenio("up", "--run-dir", _run);
        Assert.True(up.Code == 0, up.Output + Logs());
        Assert.Contains("netback", up.Output);
        Assert.Contains(_run, up.Output);
        try
        {
            Assert.True(await DaemonSupervisor.AnswersAsync(Path.Combine(_run, "hyperd.sock"), default));
            Assert.True(await DaemonSupervisor.AnswersAsync(Path.Combine(_run, "xenstored", "socket"), default));
            Assert.True(await DaemonSupervisor.AnswersAsync(Path.Combine(_run, "netback.sock"), default));

            var again = Xenio("up", "--run-dir", _run);
            Assert.Contains("already running", again.Output);

            var netback = PidOf("netback");
            Assert.NotNull(netback);
            Process.GetProcessById(netback.Value).Kill();
            int? restarted = null;
            for (int i = 0; i < 600 && (restarted is null || restarted == netback); i++)
            {
                await Task.Delay(50);
                restarted = PidOf("netback");
            }
            Assert.True(restarted is not null && restarted != netback, "netback was not restarted\n" + Logs());
            for (int i = 0; i < 600 && !await DaemonSupervisor.AnswersAsync(Path.Combine(_run, "netback.sock"), default); i++) await Task.Delay(50);
            Assert.True(await DaemonSupervisor.AnswersAsync(Path.Combine(_run, "netback.sock"), default), "restarted netback never answered\n" + Logs());

            // hyperd dies: it comes back (removing its predecessor's leftovers), then netback is restarted against the new xenstored.
            var hyperd = PidOf("hyperd");
            Assert.NotNull(hyperd);
            var netbackBefore = restarted;
            Process.GetProcessById(hyperd.Value).Kill();
            bool Restarted() => PidOf("hyperd") is { } h && h != hyperd && PidOf("netback") is { } n && n != netbackBefore;
            for (int i = 0; i < 900 && !(Restarted() && await DaemonSupervisor.AnswersAsync(Path.Combine(_run, "netback.sock"), default)); i++)
                await Task.Delay(50);
            Assert.True(Restarted(), "hyperd and netback were not both restarted\n" + Logs());
            Assert.True(await DaemonSupervisor.AnswersAsync(Path.Combine(_run, "hyperd.sock"), default), "restarted hyperd never answered\n" + Logs());
        }
        finally
        {
            var down = Xenio("down", "--run-dir", _run, "--timeout", "5");
            Assert.True(down.Code == 0, down.Output + Logs());
        }
        Assert.Empty(DaemonPids());
        Assert.False(File.Exists(Path.Combine(_run, "hyperd.sock")));
        Assert.False(File.Exists(Path.Combine(_run, "netback.sock")));
        Assert.False(File.Exists(Path.Combine(_run, "xenstored", "socket")));
        Assert.False(File.Exists(Path.Combine(_run, "xenio.pid")));
        Assert.Contains("not running", Xenio("down", "--run-dir", _run).Output);
    }

    [SkippableFact]
    public void A_domain_created_between_up_and_down_is_gone_with_its_netns_after_down()
    {
        Requires.Root();
        var agent = RepoBuild.GuestAgent();
        Skip.If(agent is null, RepoBuild.NoGuestAgent);
        var repo = RepoBuild.Root()!;
        var env = new Dictionary<string, string> { ["XENIO_GUEST_AGENT"] = agent! };
        var up = Xenio(env, "up", "--run-dir", _run);
        Assert.True(up.Code == 0, up.Output + Logs());
        try
        {
            var create = Xenio(env, "create", "--run-dir", _run, Path.Combine(repo, "examples", "web.cfg"), $"name=\"{_instance}web\"", "disk=[]");
            Assert.True(create.Code == 0, create.Output + Logs());
            Assert.Contains($"{_instance}web", Xenio("list", "--run-dir", _run).Output);
        }
        finally
        {
            var down = Xenio("down", "--run-dir", _run, "--timeout", "5");
            Assert.True(down.Code == 0, down.Output + Logs());
        }
        Assert.Empty(DaemonPids());
        Assert.DoesNotContain($"{_instance}web", Netns.Run("ip", "netns", "list"));
    }

    public void Dispose()
    {
        // A failed test must not leave daemons behind.
        foreach (var pid in DaemonPids())
            try { Process.GetProcessById(pid).Kill(); } catch (ArgumentException) { } catch (InvalidOperationException) { }
        try { Directory.Delete(_run, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        try { Directory.Delete(_logs, true); } catch (IOException) { }
    }
}
