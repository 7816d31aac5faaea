using System.Diagnostics;
using System.Globalization;
using System.Text;
using XenIo.Cli.Supervisor;

namespace XenIo.Integration.Tests.Consoles;

/// <summary>
/// Real daemons for the console acceptance tests, shared by one test class: <c>xenio hyperd</c>
/// (xenstored inside) and <c>xenio consoled --raw-ports</c> as processes in a private run directory,
/// and real guest agents created with <c>xenio create</c> (init /bin/sh on the PV console). Started
/// lazily so tests can skip first (root, tools, the agent build).
/// </summary>
public sealed class XenConsoleFixture : Xunit.IAsyncLifetime
{
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly string _instance = $"xct{Environment.ProcessId % 100000}";
    private Process? _hyperd;
    private Process? _consoled;
    private bool _started;

    public string Run { get; } = Directory.CreateTempSubdirectory("xenio-con-run-").FullName;
    public string State { get; } = Directory.CreateTempSubdirectory("xenio-con-state-").FullName;
    public string Logs { get; } = Directory.CreateTempSubdirectory("xenio-con-log-").FullName;
    public string ConsoleLogs => Path.Combine(Logs, "console");
    public string Agent { get; private set; } = "";

    public string ApiSocket => Path.Combine(Run, "consoled.sock");

    /// <summary>A xenio verb as a command line for tmux (dotnet xenio.dll VERB --run-dir RUN).</summary>
    public string XenioCommand(string verb) => $"dotnet {Path.Combine(AppContext.BaseDirectory, "xenio.dll")} {verb} --run-dir {Run}";

    public async Task StartAsync()
    {
        await _gate.WaitAsync();
        try
        {
            if (_started) return;
            Agent = RepoBuild.GuestAgent() ?? throw new InvalidOperationException("no guest agent build");
            _hyperd = Spawn("hyperd", "hyperd", "--run-dir", Run, "--state-dir", State, "--pool-mib", "512");
            await WaitForSocketAsync(Path.Combine(Run, "hyperd.sock"), _hyperd, "hyperd");
            await WaitForSocketAsync(Path.Combine(Run, "xenstored", "socket"), _hyperd, "hyperd");
            await StartConsoledAsync();
            _started = true;
        }
        finally
        {
            _gate.Release();
        }
    }

    public async Task StartConsoledAsync()
    {
        _consoled = Spawn("consoled", "consoled", "--run-dir", Run, "--raw-ports", "--log-dir", ConsoleLogs);
        await WaitForSocketAsync(ApiSocket, _consoled, "consoled");
    }

    /// <summary>Kills consoled the hard way (as a crash would) and waits for it to be gone.</summary>
    public async Task KillConsoledAsync()
    {
        var p = _consoled!;
        p.Kill();
        await p.WaitForExitAsync();
        p.Dispose();
        _consoled = null;
    }

    private Process Spawn(string log, params string[] args)
    {
        var psi = new ProcessStartInfo("/bin/sh") { UseShellExecute = false };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add("exec \"$0\" \"$@\" >>\"$DAEMON_LOG\" 2>&1 </dev/null");
        psi.ArgumentList.Add("dotnet");
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "xenio.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["DAEMON_LOG"] = Path.Combine(Logs, log + ".log");
        psi.Environment["XENIO_INSTANCE"] = _instance;
        psi.Environment["XENIO_GUEST_AGENT"] = Agent;
        return Process.Start(psi)!;
    }

    private async Task WaitForSocketAsync(string path, Process process, string name)
    {
        for (int i = 0; i < 600; i++)
        {
            if (await DaemonSupervisor.AnswersAsync(path, default)) return;
            if (process.HasExited) break;
            await Task.Delay(50);
        }
        throw new InvalidOperationException($"{name} did not open {path}\n{DaemonLogs()}");
    }

    public string DaemonLogs() =>
        string.Join("\n", Directory.GetFiles(Logs).Select(f => $"== {f}\n{File.ReadAllText(f)}"));

    public (int Code, string Output) Xenio(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "xenio.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.ArgumentList.Add("--run-dir");
        psi.ArgumentList.Add(Run);
        psi.Environment["XENIO_INSTANCE"] = _instance;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(2))) { p.Kill(true); throw new TimeoutException($"xenio {string.Join(' ', args)} hung"); }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    /// <summary>Creates a domain whose init is an interactive /bin/sh on the PV console; returns its name.</summary>
    public string CreateDomain(string shortName)
    {
        var name = $"{_instance}{shortName}";
        var cfg = Path.Combine(State, name + ".cfg");
        File.WriteAllText(cfg, $"name = \"{name}\"\nmemory = 16\nvcpus = 1\non_poweroff = \"destroy\"\non_crash = \"destroy\"\n");
        var (code, output) = Xenio("create", cfg);
        if (code != 0) throw new InvalidOperationException($"xenio create {name}: {output}\n{DaemonLogs()}");
        return name;
    }

    public void Destroy(string name) => Xenio("destroy", name);

    /// <summary>The console's ports as consoled lists them (waits until it serves the domain).</summary>
    public async Task<(int Domid, int Telnet, int Raw)> PortsAsync(string name)
    {
        string last = "";
        for (int i = 0; i < 300; i++)
        {
            var (code, output) = Xenio("console", "--list");
            last = output;
            foreach (var line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                var f = line.Split(' ');
                // Just after a restart consoled may list a console before it knows the domain's id, with
                // "-" in place of the id (or of a port it has not opened): wait on.
                if (code == 0 && f.Length == 4 && f[1] == name
                    && int.TryParse(f[0], CultureInfo.InvariantCulture, out var domid)
                    && int.TryParse(f[2], CultureInfo.InvariantCulture, out var telnet)
                    && int.TryParse(f[3], CultureInfo.InvariantCulture, out var raw))
                    return (domid, telnet, raw);
            }
            await Task.Delay(100);
        }
        throw new TimeoutException($"consoled never served {name}: {last}\n{DaemonLogs()}");
    }

    /// <summary>A xenstore value read with the xenstore utilities over the daemon's socket.</summary>
    public string? XenstoreRead(string path) => XenstoreTool("xenstore-read", path);

    /// <summary>
    /// Reads <paramref name="path"/> until it holds <paramref name="expected"/> (for values a daemon
    /// publishes after the fact), for up to 10 s; returns the last value read.
    /// </summary>
    public async Task<string?> XenstoreReadWhenAsync(string path, string expected)
    {
        var value = XenstoreRead(path);
        for (var i = 0; i < 100 && value != expected; i++)
        {
            await Task.Delay(100);
            value = XenstoreRead(path);
        }
        return value;
    }

    /// <summary>A xenstore utility's output (null when it failed), run against this fixture's xenstored.</summary>
    public string? XenstoreTool(string tool, params string[] args)
    {
        var psi = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["XENSTORED_PATH"] = Path.Combine(Run, "xenstored", "socket");
        using var p = Process.Start(psi)!;
        var output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return p.ExitCode == 0 ? output.Trim() : null;
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var p in new[] { _consoled, _hyperd })
        {
            if (p is null) continue;
            if (!p.HasExited)
            {
                // SIGTERM: hyperd stops its domains' agents on the way out.
                Tools.Run("kill", "-TERM", p.Id.ToString(CultureInfo.InvariantCulture));
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                try { await p.WaitForExitAsync(timeout.Token); }
                catch (OperationCanceledException) { p.Kill(); await p.WaitForExitAsync(); }
            }
            p.Dispose();
        }
        // XENIO_TEST_KEEP_LOGS=1 keeps the daemons' logs for a post-mortem.
        var dirs = Environment.GetEnvironmentVariable("XENIO_TEST_KEEP_LOGS") == "1" ? new[] { Run, State } : new[] { Run, State, Logs };
        foreach (var dir in dirs)
        {
            try { Directory.Delete(dir, true); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
    }
}
