using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using XenIo.Cli.Config;
using XenIo.Cli.Supervisor;
using XenIo.Hypervisor.Domains.Hyperd;

namespace XenIo.Cli.Verbs;

/// <summary><c>xenio up</c> / <c>xenio down</c>: start every daemon under a supervisor, and stop them all with the domains.</summary>
internal static class UpVerbs
{
    private static string PidFile(string run) => Path.Combine(run, "xenio.pid");
    private static string ReadyFile(string run) => Path.Combine(run, "xenio.ready");

    /// <summary>Daemon logs: <c>--log-dir</c>, else <c>XENIO_LOG_DIR</c>, else /var/log/xenio as root, else the run directory.</summary>
    private static string LogDirectory(string? option, string run) =>
        option is { Length: > 0 } ? option
        : Environment.GetEnvironmentVariable("XENIO_LOG_DIR") is { Length: > 0 } env ? env
        : HyperdVerb.Settings.LogDirectory is { } configured ? configured
        : Environment.IsPrivilegedProcess ? "/var/log/xenio" : Path.Combine(run, "log");

    public static Command BuildUp()
    {
        var runDir = HyperdVerb.RunDirOption();
        var logDir = new Option<string>("--log-dir") { Description = "daemon logs (default: XENIO_LOG_DIR, else /var/log/xenio as root)" };
        var foreground = new Option<bool>("--foreground") { Description = "run the supervisor in the foreground" };
        var config = new Option<string>("--config") { Description = $"settings file (default: XENIO_CONFIG, else {XenioSettings.DefaultFile} if present)" };
        var command = new Command("up", "start hyperd (with xenstored), netback, consoled and blkback under a supervisor, boot the autostart domains; return once they answer")
            { runDir, logDir, foreground, config };
        command.SetAction(parse =>
        {
            // The daemons and the supervisor read the same settings: they inherit the variable.
            if (parse.GetValue(config) is { Length: > 0 } file) Environment.SetEnvironmentVariable("XENIO_CONFIG", Path.GetFullPath(file));
            var run = Path.GetFullPath(HyperdVerb.RunDirectory(parse.GetValue(runDir)));
            var logs = Path.GetFullPath(LogDirectory(parse.GetValue(logDir), run));
            Directory.CreateDirectory(run);
            Directory.CreateDirectory(logs);
            return parse.GetValue(foreground) ? Supervise(run, logs) : Detach(run, logs);
        });
        return command;
    }

    /// <summary>The supervisor's pid if one holds the run directory's lock, else null.</summary>
    private static int? RunningSupervisor(string run)
    {
        try
        {
            using var probe = new FileStream(PidFile(run), FileMode.Open, FileAccess.ReadWrite, FileShare.None);
            return null;
        }
        catch (FileNotFoundException) { return null; }
        catch (DirectoryNotFoundException) { return null; }
        catch (IOException)
        {
            // The locked pid file cannot be opened here (.NET takes a shared flock to read), so the pid comes from the
            // ready file the supervisor writes alongside; 0 while it is still starting.
            try { return int.Parse(File.ReadAllText(ReadyFile(run)).Trim(), CultureInfo.InvariantCulture); }
            catch (Exception e) when (e is IOException or FormatException or OverflowException) { return 0; }
        }
    }

    private static int Detach(string run, string logs)
    {
        if (RunningSupervisor(run) is { } pid)
        {
            Console.WriteLine($"xenio is already running in {run} (supervisor pid {(pid > 0 ? pid : "starting")})");
            return 0;
        }
        File.Delete(ReadyFile(run));
        var self = SelfCommand.Current();
        var psi = new ProcessStartInfo("/bin/sh") { UseShellExecute = false };
        psi.ArgumentList.Add("-c");
        // setsid: the supervisor outlives this command and the terminal it ran in.
        psi.ArgumentList.Add("exec setsid \"$0\" \"$@\" >>\"$XENIO_DAEMON_LOG\" 2>&1 </dev/null");
        psi.ArgumentList.Add(self.FileName);
        foreach (var a in self.PrefixArguments) psi.ArgumentList.Add(a);
        foreach (var a in new[] { "up", "--foreground", "--run-dir", run, "--log-dir", logs }) psi.ArgumentList.Add(a);
        psi.Environment["XENIO_DAEMON_LOG"] = Path.Combine(logs, "xenio.log");
        using var supervisor = Process.Start(psi)!;
        var deadline = DateTime.UtcNow.AddMinutes(2);
        while (!File.Exists(ReadyFile(run)))
        {
            if (supervisor.HasExited || DateTime.UtcNow > deadline)
            {
                Console.Error.WriteLine($"xenio up: the daemons did not start: see {Path.Combine(logs, "xenio.log")}");
                return 1;
            }
            Thread.Sleep(50);
        }
        Console.WriteLine($"xenio up: {DaemonNames(run)} are running; run directory {run}, logs in {logs}, supervisor pid {supervisor.Id}");
        return 0;
    }

    private static int Supervise(string run, string logs)
    {
        FileStream pidFile;
        try { pidFile = new FileStream(PidFile(run), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None); }
        catch (IOException)
        {
            Console.WriteLine($"xenio is already running in {run} (supervisor pid {RunningSupervisor(run)})");
            return 1;
        }
        using (pidFile)
        {
            pidFile.SetLength(0);
            pidFile.Write(System.Text.Encoding.ASCII.GetBytes(Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "\n"));
            pidFile.Flush();
            using var stop = new CancellationTokenSource();
            void OnSignal(PosixSignalContext c) { c.Cancel = true; stop.Cancel(); }
            using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
            using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
            var (hyperd, backends) = DaemonSupervisor.Standard(run);
            var supervisor = new DaemonSupervisor(SelfCommand.Current(), hyperd, backends, logs, Console.Out);
            try
            {
                supervisor.RunAsync(() =>
                {
                    // The autostart domains boot before `xenio up` returns, as xendomains start does.
                    _ = Task.Run(async () =>
                    {
                        try
                        {
                            using var client = new HyperdClient(HyperdClient.SocketUnder(run));
                            var settings = HyperdVerb.Settings;
                            await Autostart.BootAsync(client, settings.AutostartDirectory, settings.DefaultBridge, Console.Out, stop.Token);
                        }
                        catch (Exception e) when (e is IOException or HttpRequestException or DomainException or OperationCanceledException)
                        {
                            Console.Error.WriteLine($"xenio up: autostart: {e.Message}");
                        }
                        File.WriteAllText(ReadyFile(run), Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "\n");
                        Console.WriteLine($"xenio up: ready in {run}");
                    });
                }, stop.Token).GetAwaiter().GetResult();
                return 0;
            }
            catch (DaemonFailedException e)
            {
                Console.Error.WriteLine($"xenio up: {e.Message}");
                return 1;
            }
            finally
            {
                File.Delete(ReadyFile(run));
                File.Delete(PidFile(run));
            }
        }
    }

    public static Command BuildDown()
    {
        var runDir = HyperdVerb.RunDirOption();
        var timeout = new Option<int>("--timeout") { Description = "seconds each domain gets to shut down before it is destroyed (default 30)", DefaultValueFactory = _ => 30 };
        var command = new Command("down", "shut every domain down, then stop the daemons `xenio up` started") { runDir, timeout };
        command.SetAction(parse =>
        {
            var run = Path.GetFullPath(HyperdVerb.RunDirectory(parse.GetValue(runDir)));
            if (RunningSupervisor(run) is 0)
            {
                Console.Error.WriteLine($"xenio down: the supervisor in {run} is still starting; try again");
                return 1;
            }
            if (RunningSupervisor(run) is not { } pid)
            {
                Console.WriteLine($"xenio is not running in {run}");
                return 0;
            }
            ShutDownDomains(run, Math.Max(1, parse.GetValue(timeout)));
            if (Interop.Libc.Kill(pid, Interop.Libc.SIGTERM) != 0)
            {
                Console.Error.WriteLine($"xenio down: cannot signal the supervisor (pid {pid}): errno {Marshal.GetLastPInvokeError()}");
                return 1;
            }
            var deadline = DateTime.UtcNow.AddMinutes(1);
            while (RunningSupervisor(run) is not null)
            {
                if (DateTime.UtcNow > deadline)
                {
                    Console.Error.WriteLine($"xenio down: the supervisor (pid {pid}) did not stop within a minute");
                    return 1;
                }
                Thread.Sleep(50);
            }
            Console.WriteLine($"xenio down: stopped {DaemonNames(run)} in {run}");
            return 0;
        });
        return command;
    }

    /// <summary>xl shutdown -w for every domain at once, then destroy whatever is left after the timeout.</summary>
    private static void ShutDownDomains(string run, int timeoutSeconds)
    {
        using var client = new HyperdClient(HyperdClient.SocketUnder(run));
        List<DomainInfo> domains;
        try { domains = client.ListAsync().GetAwaiter().GetResult(); }
        catch (Exception e) when (e is DomainException or IOException or HttpRequestException)
        {
            Console.Error.WriteLine($"xenio down: cannot list domains ({e.Message}); stopping the daemons anyway");
            return;
        }
        var shutdowns = domains.Select(async d =>
        {
            try { await client.ActAsync(d.Name, "shutdown", timeoutSeconds); }
            catch (Exception e) when (e is DomainException or IOException or HttpRequestException or TaskCanceledException)
            {
                Console.Error.WriteLine($"xenio down: {d.Name} did not shut down ({e.Message})");
            }
        }).ToArray();
        Task.WaitAll(shutdowns);
        List<DomainInfo> left;
        try { left = client.ListAsync().GetAwaiter().GetResult(); }
        catch (Exception e) when (e is DomainException or IOException or HttpRequestException) { return; }
        foreach (var d in left)
        {
            try
            {
                client.DestroyAsync(d.Name).GetAwaiter().GetResult();
                Console.WriteLine($"xenio down: destroyed {d.Name}");
            }
            catch (Exception e) when (e is DomainException or IOException or HttpRequestException)
            {
                Console.Error.WriteLine($"xenio down: cannot destroy {d.Name} ({e.Message})");
            }
        }
        if (domains.Count > 0) Console.WriteLine($"xenio down: {domains.Count - left.Count} of {domains.Count} domains shut down gracefully");
    }

    /// <summary>"hyperd (with xenstored), netback, consoled and blkback": the daemons <c>up</c> supervises, from their one list.</summary>
    private static string DaemonNames(string run)
    {
        var (hyperd, backends) = DaemonSupervisor.Standard(run);
        var names = backends.Select(b => b.Name).ToList();
        return $"{hyperd.Name} (with xenstored), {string.Join(", ", names.Take(names.Count - 1))} and {names[^1]}";
    }
}
