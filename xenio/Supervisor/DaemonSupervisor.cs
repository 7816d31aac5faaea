using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;

namespace XenIo.Cli.Supervisor;

/// <summary>
/// <c>xenio up</c>'s supervisor: starts the daemons in order (hyperd hosts xenstored, every backend needs it),
/// restarts a dead backend with backoff, and when hyperd dies restarts it and then every backend (their xenstore
/// connection died with it). On cancellation it stops the backends first, then hyperd, and waits for each.
/// </summary>
public sealed class DaemonSupervisor
{
    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(20);
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(30);
    /// <summary>A daemon that ran this long without dying has its backoff reset.</summary>
    private static readonly TimeSpan StableAfter = TimeSpan.FromSeconds(60);

    private readonly SelfCommand _self;
    private readonly DaemonSpec _hyperd;
    private readonly IReadOnlyList<DaemonSpec> _backends;
    private readonly string _logDirectory;
    private readonly TextWriter _log;
    private readonly Dictionary<string, Process> _running = [];
    /// <summary>Start times kept here: Process.StartTime throws once the process has exited.</summary>
    private readonly Dictionary<string, DateTime> _started = [];

    public DaemonSupervisor(SelfCommand self, DaemonSpec hyperd, IReadOnlyList<DaemonSpec> backends, string logDirectory, TextWriter log)
    {
        _self = self;
        _hyperd = hyperd;
        _backends = backends;
        _logDirectory = logDirectory;
        _log = log;
    }

    /// <summary>The daemons of one run directory: hyperd (xenstored inside), netback, consoled and blkback.</summary>
    public static (DaemonSpec Hyperd, DaemonSpec[] Backends) Standard(string runDirectory) =>
        (new DaemonSpec("hyperd", ["hyperd", "--run-dir", runDirectory],
            [Path.Combine(runDirectory, "hyperd.sock"), Path.Combine(runDirectory, "xenstored", "socket")]),
         [new DaemonSpec("netback", ["netback", "--run-dir", runDirectory], [Path.Combine(runDirectory, "netback.sock")]),
          new DaemonSpec("consoled", ["consoled", "--run-dir", runDirectory], [Path.Combine(runDirectory, "consoled.sock")]),
          new DaemonSpec("blkback", ["blkback", "--run-dir", runDirectory], [Path.Combine(runDirectory, "blkback.sock")])]);

    /// <summary>The pid of a running daemon, for status and tests.</summary>
    public int? PidOf(string name)
    {
        lock (_running) return _running.TryGetValue(name, out var p) && !p.HasExited ? p.Id : null;
    }

    /// <summary>Starts every daemon and waits until each answers; calls <paramref name="ready"/> once, then supervises until cancelled.</summary>
    public async Task RunAsync(Action ready, CancellationToken stop)
    {
        try
        {
            await StartAllAsync(stop).ConfigureAwait(false);
            ready();
            var backoff = new Dictionary<string, TimeSpan>();
            while (!stop.IsCancellationRequested)
            {
                Task[] exits;
                lock (_running) exits = [.. _running.Values.Select(p => p.WaitForExitAsync(stop))];
                try { await Task.WhenAny(exits).ConfigureAwait(false); }
                catch (OperationCanceledException) { break; }
                if (stop.IsCancellationRequested) break;

                if (Exited(_hyperd.Name) is { } hyperdExit)
                {
                    _log.WriteLine($"xenio up: hyperd exited ({hyperdExit}); restarting it and then every backend");
                    foreach (var b in _backends) await StopAsync(b.Name).ConfigureAwait(false);
                    await DelayAsync(_hyperd.Name, backoff, stop).ConfigureAwait(false);
                    try { await StartAllAsync(stop).ConfigureAwait(false); }
                    catch (DaemonFailedException e) { _log.WriteLine($"xenio up: {e.Message}"); }
                    continue;
                }
                foreach (var b in _backends)
                {
                    if (Exited(b.Name) is not { } code) continue;
                    _log.WriteLine($"xenio up: {b.Name} exited ({code}); restarting it");
                    await DelayAsync(b.Name, backoff, stop).ConfigureAwait(false);
                    try { await StartAsync(b, stop).ConfigureAwait(false); }
                    catch (DaemonFailedException e) { _log.WriteLine($"xenio up: {e.Message}"); }
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested) { }
        finally
        {
            for (int i = _backends.Count - 1; i >= 0; i--) await StopAsync(_backends[i].Name).ConfigureAwait(false);
            await StopAsync(_hyperd.Name).ConfigureAwait(false);
        }
    }

    private string? Exited(string name)
    {
        lock (_running)
        {
            if (!_running.TryGetValue(name, out var p) || !p.HasExited) return null;
            var stable = _started.TryGetValue(name, out var started) && DateTime.UtcNow - started > StableAfter;
            var code = p.ExitCode;
            _running.Remove(name);
            p.Dispose();
            return $"status {code}{(stable ? "" : ", soon after start")}";
        }
    }

    /// <summary>Backoff doubling from 1 s to <see cref="MaxBackoff"/>, so a daemon that cannot start does not spin.</summary>
    private async Task DelayAsync(string name, Dictionary<string, TimeSpan> backoff, CancellationToken stop)
    {
        bool stable;
        lock (_running) stable = !_started.TryGetValue(name, out var started) || DateTime.UtcNow - started > StableAfter;
        var delay = !stable && backoff.TryGetValue(name, out var d) ? d : TimeSpan.FromSeconds(1);
        backoff[name] = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, MaxBackoff.Ticks));
        await Task.Delay(delay, stop).ConfigureAwait(false);
    }

    private async Task StartAllAsync(CancellationToken stop)
    {
        await StartAsync(_hyperd, stop).ConfigureAwait(false);
        foreach (var b in _backends) await StartAsync(b, stop).ConfigureAwait(false);
    }

    private async Task StartAsync(DaemonSpec spec, CancellationToken stop)
    {
        var log = Path.Combine(_logDirectory, spec.Name + ".log");
        // exec through sh so the daemon's output goes straight to its log file: it must outlive a supervisor crash
        // without a pipe to write into, and the pid we watch is the daemon's own.
        var psi = new ProcessStartInfo("/bin/sh") { UseShellExecute = false };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add("exec \"$0\" \"$@\" >>\"$XENIO_DAEMON_LOG\" 2>&1 </dev/null");
        psi.ArgumentList.Add(_self.FileName);
        foreach (var a in _self.PrefixArguments) psi.ArgumentList.Add(a);
        foreach (var a in spec.Arguments) psi.ArgumentList.Add(a);
        psi.Environment["XENIO_DAEMON_LOG"] = log;
        // Every daemon places its own logs (consoled's per-domain console logs) under the directory `up` was given.
        psi.Environment["XENIO_LOG_DIR"] = _logDirectory;
        var process = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {spec.Name}");
        lock (_running)
        {
            _running[spec.Name] = process;
            _started[spec.Name] = DateTime.UtcNow;
        }
        _log.WriteLine($"xenio up: started {spec.Name} (pid {process.Id.ToString(CultureInfo.InvariantCulture)}), log {log}");

        var deadline = DateTime.UtcNow + ReadyTimeout;
        foreach (var socket in spec.ReadySockets)
        {
            while (!await AnswersAsync(socket, stop).ConfigureAwait(false))
            {
                if (process.HasExited)
                    throw new DaemonFailedException($"{spec.Name} exited with status {process.ExitCode} before {socket} answered: see {log}");
                if (DateTime.UtcNow > deadline)
                    throw new DaemonFailedException($"{spec.Name} did not open {socket} within {ReadyTimeout.TotalSeconds:0} s: see {log}");
                await Task.Delay(50, stop).ConfigureAwait(false);
            }
        }
    }

    /// <summary>A socket file can outlive its daemon, so ready means a connect succeeds.</summary>
    public static async Task<bool> AnswersAsync(string path, CancellationToken cancellationToken)
    {
        if (!File.Exists(path)) return false;
        using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await s.ConnectAsync(new UnixDomainSocketEndPoint(path), cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (SocketException) { return false; }
    }

    private async Task StopAsync(string name)
    {
        Process? p;
        lock (_running)
        {
            if (!_running.Remove(name, out p)) return;
        }
        using (p)
        {
            if (p.HasExited) return;
            Interop.Libc.Kill(p.Id, Interop.Libc.SIGTERM);
            using var timeout = new CancellationTokenSource(StopTimeout);
            try { await p.WaitForExitAsync(timeout.Token).ConfigureAwait(false); }
            catch (OperationCanceledException)
            {
                _log.WriteLine($"xenio up: {name} did not stop within {StopTimeout.TotalSeconds:0} s; killing it");
                p.Kill();
                await p.WaitForExitAsync().ConfigureAwait(false);
            }
            _log.WriteLine($"xenio up: stopped {name}");
        }
    }
}

/// <summary>A daemon could not be started: the message says which and where its log is.</summary>
public sealed class DaemonFailedException(string message) : Exception(message);
