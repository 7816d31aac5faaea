using System.Diagnostics;

namespace XenIo.Bench.Peers;

/// <summary>
/// Runs the command-line tools the peer harness drives and owns every long-running process it starts:
/// disposing it stops each one (its whole tree, by its own pid), so a failed set-up never leaves an
/// ovsdb-server, a vde_switch or an iperf3 server behind.
/// </summary>
public sealed class PeerProcesses : IDisposable
{
    private readonly List<Process> _owned = [];

    /// <summary>Runs a tool to completion and returns its standard output; throws with its standard error when it fails.</summary>
    public static string Run(string file, IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null, int timeoutMs = 30_000, bool allowFailure = false)
    {
        var psi = Info(file, args, environment);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {file}");
        var err = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEndAsync();
        if (!p.WaitForExit(timeoutMs))
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit();
            throw new TimeoutException($"{file} {string.Join(' ', psi.ArgumentList)}: no answer in {timeoutMs} ms");
        }
        p.WaitForExit();
        if (p.ExitCode != 0 && !allowFailure)
            throw new InvalidOperationException($"{file} {string.Join(' ', psi.ArgumentList)} exited {p.ExitCode}: {err.Result.Trim()}");
        return output.Result;
    }

    /// <summary>Starts a long-running tool in the foreground of this process; it is stopped on <see cref="Dispose"/>.</summary>
    public Process Start(string file, IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null)
    {
        var psi = Info(file, args, environment);
        // Keep stdin open and unread: vde_switch treats end-of-file on its console as "shut down".
        psi.RedirectStandardInput = true;
        var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {file}");
        // Drain its output so a chatty daemon never blocks on a full pipe.
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        _owned.Add(p);
        return p;
    }

    /// <summary>Fails when a started process has already exited (a daemon that refused its configuration).</summary>
    public static void EnsureRunning(Process p, string what)
    {
        if (p.HasExited) throw new InvalidOperationException($"{what} exited with status {p.ExitCode} right after starting");
    }

    /// <summary>Waits until <paramref name="condition"/> holds, or throws after <paramref name="timeoutMs"/>.</summary>
    public static void WaitFor(Func<bool> condition, string what, int timeoutMs = 10_000)
    {
        var sw = Stopwatch.StartNew();
        while (!condition())
        {
            if (sw.ElapsedMilliseconds > timeoutMs) throw new TimeoutException($"{what} did not happen within {timeoutMs} ms");
            Thread.Sleep(50);
        }
    }

    public static string? Which(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin").Split(':')
            .Concat(["/usr/sbin", "/sbin"]).Select(d => Path.Combine(d, tool)).FirstOrDefault(File.Exists);

    private static ProcessStartInfo Info(string file, IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (environment is not null)
            foreach (var (k, v) in environment) psi.Environment[k] = v;
        return psi;
    }

    public void Dispose()
    {
        // Last started, first stopped: clients before the daemons they talk to.
        for (var i = _owned.Count - 1; i >= 0; i--)
        {
            var p = _owned[i];
            try
            {
                if (!p.HasExited)
                {
                    p.Kill(entireProcessTree: true);
                    p.WaitForExit(5_000);
                }
            }
            catch (InvalidOperationException)
            {
                // Already gone.
            }
            p.Dispose();
        }
        _owned.Clear();
    }
}
