using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using XenIo.Guest.Consoles;
using XenIo.Guest.Devices;
using XenIo.Guest.Init;
using XenIo.Guest.Setup;
using XenIo.Guest.Xenstore;
using XenIo.Hypervisor.Domains.Spawn;
using static XenIo.Guest.Interop.Libc;

namespace XenIo.Guest;

/// <summary>
/// The guest agent: PID 1 of its domain's namespaces. It says hello, reads its configuration, builds
/// the guest's file system view, hostname and loopback, starts init on a pty, reaps, and powers the
/// domain off when init exits. SIGTERM stops it gracefully: init gets SIGTERM, then SIGKILL after the
/// configured timeout.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
internal sealed class Agent(AgentOptions options)
{
    /// <summary>Exit code when the agent could not set the guest up (EX_SOFTWARE).</summary>
    public const int SetupFailed = 70;

    /// <summary>Exit code after an unexpected failure (EX_OSERR).</summary>
    public const int Crashed = 71;

    private const int MaxConfigBytes = 1 << 20;

    private readonly SemaphoreSlim _wake = new(0);
    private volatile bool _stopRequested;
    private volatile ShutdownReason _reason = ShutdownReason.Poweroff;
    private string _name = "?";

    public int Run()
    {
        Notifier? notify = null;
        AgentConfig config;
        Pty pty;
        int initPid;
        IConsoleFrontend console;
        FrontendContext? frontends;
        try
        {
            foreach (var fd in new[] { options.ConfigFd, options.NotifyFd, options.ConsoleFd })
                if (fd is { } f) Fcntl(f, F_SETFD, FD_CLOEXEC);
            if (options.NotifyFd is { } nfd) notify = new Notifier(nfd);
            RefuseHostNamespaces();
            // Our pid as hyperd sees it, from the host's /proc while it is still mounted here.
            notify?.Send(new AgentMessage(AgentMessageKind.Hello, HostPid()));
            config = ReadConfig();
            if (!KernelNames.IsValid(config.Name)) throw new ArgumentException($"invalid domain name '{config.Name}'");
            _name = config.Name;
            foreach (var fd in new[] { config.MemoryFd, config.HypercallFd, config.ConsoleFd, config.StoreEventFd, config.ConsoleEventFd })
                if (fd is { } f) Fcntl(f, F_SETFD, FD_CLOEXEC);

            LoadAssembliesBeforeMounts();
            GuestMounts.Apply(config.HiddenPaths, config.Userns, Log);
            GuestIdentity.SetHostname(config.Name);
            GuestIdentity.LoopbackUp();
            pty = Pty.Open();
            frontends = OpenFrontends(config);
            console = ChooseConsole(config, frontends);

            using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
            using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
            initPid = InitProcess.Start(config.Init, config.Name, config.Environment, pty.SlavePath);

            var consoleThread = new Thread(() => RunConsole(console, pty), 256 * 1024) { IsBackground = true, Name = "console" };
            consoleThread.Start();
            notify?.Send(new AgentMessage(AgentMessageKind.Ready, initPid));
            Log($"init {InitDescription(config.Init)} running as pid {initPid}");
            using var controlStop = new CancellationTokenSource();
            var control = StartControl(frontends, controlStop.Token);
            if (frontends is not null) FrontendDrivers.Start(frontends, FrontendDrivers.Create(), controlStop.Token);

            var status = Supervise(initPid, config.StopTimeoutMs);
            var (exit, signal) = ChildReaper.Decode(status);
            Log(signal is { } s ? $"init killed by signal {s}: poweroff" : $"init exited with {exit}: poweroff");

            // PID 1's remaining duty: nothing else in the domain outlives init, and the console drains
            // to its end (the pty hangs up once no process holds the slave).
            Kill(-1, SIGKILL);
            var reaper = new ChildReaper();
            var deadline = Environment.TickCount64 + 5000;
            while (ChildReaper.ZombieChildren(Environment.ProcessId).Count > 0 || OtherProcesses() > 0)
            {
                reaper.ReapOrphans();
                if (Environment.TickCount64 > deadline) break;
                _wake.Wait(10);
            }
            consoleThread.Join(TimeSpan.FromSeconds(2));
            var reason = _reason;
            if (control is not null)
            {
                control.ReportAsync(reason == ShutdownReason.Reboot ? "reboot" : "poweroff").GetAwaiter().GetResult();
                controlStop.Cancel();
            }
            notify?.Send(signal is { } sig
                ? new AgentMessage(AgentMessageKind.Shutdown, sig, reason, Signaled: true)
                : new AgentMessage(AgentMessageKind.Shutdown, exit ?? 0, reason));
            return 0;
        }
        catch (Exception e) when (e is IOException or ArgumentException or JsonException or InvalidOperationException
            or UnauthorizedAccessException or FileNotFoundException or SpawnException or NotSupportedException)
        {
            Log($"cannot start the guest: {e.Message}");
            return SetupFailed;
        }
    }

    /// <summary>
    /// A JIT-run agent (the test builds) loads assemblies lazily from its own directory, which the mounts
    /// may hide (a checkout under /tmp gets the guest's own /tmp): load what the frontends use now. In the
    /// NativeAOT build there is nothing to load and this costs nothing.
    /// </summary>
    private static void LoadAssembliesBeforeMounts()
    {
        GC.KeepAlive(typeof(XenIo.Net.Tap.TapDevice).Assembly);
        GC.KeepAlive(typeof(XenIo.Hypervisor.Grants.GrantTable).Assembly);
    }

    private void Stop(PosixSignalContext context)
    {
        context.Cancel = true;
        _stopRequested = true;
        _wake.Release();
    }

    /// <summary>
    /// Opens the domain's memory and xenstore ring (when hyperd introduced it) for the frontends. A ring
    /// that cannot be opened leaves the guest running without devices: hyperd can still destroy it.
    /// </summary>
    private FrontendContext? OpenFrontends(AgentConfig config)
    {
        try { return FrontendContext.Open(config, Log); }
        catch (Exception e) when (e is IOException or InvalidDataException or ArgumentException or InvalidOperationException
            or Hypervisor.Hypercalls.HypercallException)
        {
            Log($"cannot open the xenstore ring: {e.Message}");
            return null;
        }
    }

    /// <summary>
    /// Where init's terminal goes: the debug console socket when one was given, else the PV console ring
    /// hyperd placed (consoled serves it), else nothing.
    /// </summary>
    private IConsoleFrontend ChooseConsole(AgentConfig config, FrontendContext? frontends)
    {
        var consoleFd = options.ConsoleFd ?? config.ConsoleFd;
        if (consoleFd is { } c) return new SocketConsole(c);
        if (frontends is not null && config is { ConsoleFrame: { } frame, ConsolePort: { } port, ConsoleEventFd: { } evFd })
        {
            if (RingConsole.Open(frontends.Domain.Memory, frame, port, evFd, frontends.Domain.Hypercalls, Log) is { } ring) return ring;
            Log($"console frame {frame} is not a page of the domain's memory: console output is dropped");
        }
        return new DiscardConsole();
    }

    /// <summary>Serves control/shutdown and control/sysrq on a thread-pool task.</summary>
    private GuestControl? StartControl(FrontendContext? frontends, CancellationToken cancellationToken)
    {
        if (frontends is null) return null;
        var control = new GuestControl(frontends);
        _ = Task.Run(async () =>
        {
            try { await control.RunAsync(OnControl, cancellationToken).ConfigureAwait(false); }
            catch (OperationCanceledException) { }
            catch (Exception e) { Log($"xenstore: {e.Message}"); }
        }, CancellationToken.None);
        return control;
    }

    private void OnControl(ControlRequest request)
    {
        switch (request)
        {
            case ControlRequest.Crash:
                Log("sysrq c: crashing the domain");
                Environment.Exit(Crashed);
                break;
            default:
                _reason = request == ControlRequest.Reboot ? ShutdownReason.Reboot : ShutdownReason.Poweroff;
                Log($"control: {(request == ControlRequest.Reboot ? "reboot" : "poweroff")}");
                _stopRequested = true;
                _wake.Release();
                break;
        }
    }

    /// <summary>Waits for init, reaping orphans by pid as they come; returns init's wait status.</summary>
    private int Supervise(int initPid, int stopTimeoutMs)
    {
        var reaper = new ChildReaper();
        reaper.Exclude(initPid);
        // Wake when init exits without reaping it (WNOWAIT), so its status is collected by pid below.
        // No SIGCHLD registration: with one, the runtime's signal thread reaps with wait4(-1) and
        // steals init's status (seen under strace).
        var waiter = new Thread(() => WaitForExit(initPid), 64 * 1024) { IsBackground = true, Name = "init waiter" };
        waiter.Start();
        long killAt = 0;
        while (true)
        {
            if (ChildReaper.TryReap(initPid) is { } status) return status;
            reaper.ReapOrphans();
            if (_stopRequested && killAt == 0)
            {
                Log("stop requested: SIGTERM to init");
                Kill(initPid, SIGTERM);
                killAt = Environment.TickCount64 + Math.Max(0, stopTimeoutMs);
            }
            if (killAt != 0 && Environment.TickCount64 >= killAt)
            {
                Log("init did not stop in time: SIGKILL");
                Kill(initPid, SIGKILL);
                killAt = long.MaxValue;
            }
            var wait = killAt is 0 or long.MaxValue ? 1000 : (int)Math.Clamp(killAt - Environment.TickCount64, 1, 1000);
            // SIGCHLD wakes us; the timeout only covers signals that raced the last check.
            _wake.Wait(wait);
        }
    }

    private unsafe void WaitForExit(int pid)
    {
        var info = stackalloc byte[128];
        while (WaitId(P_PID, pid, info, WEXITED | WNOWAIT) != 0 && Marshal.GetLastPInvokeError() == EINTR) { }
        _wake.Release();
    }

    private static void RunConsole(IConsoleFrontend console, Pty pty)
    {
        try { console.Run(pty, CancellationToken.None); }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or ObjectDisposedException)
        {
            System.Console.Error.WriteLine($"xenio-guest: console: {e.Message}");
        }
    }

    private static int OtherProcesses()
    {
        var self = Environment.ProcessId;
        var n = 0;
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
            if (int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var pid) && pid != self)
                n++;
        return n;
    }

    /// <summary>
    /// Refuses to run where mounting over /proc, /run and /tmp would change the host's view: not PID 1,
    /// or still in the host's mount namespace (someone ran the agent by hand).
    /// </summary>
    private static void RefuseHostNamespaces()
    {
        if (Environment.ProcessId != 1)
            throw new InvalidOperationException("xenio-guest must be PID 1 of a new pid namespace: hyperd starts it (xenio create)");
        // /proc is still the host's here, so /proc/1 is the host's init; where we may not look at it
        // (a user namespace), the pid namespace check above has to do.
        var ours = File.ResolveLinkTarget("/proc/self/ns/mnt", false)?.ToString();
        string? host;
        try { host = File.ResolveLinkTarget("/proc/1/ns/mnt", false)?.ToString(); }
        catch (UnauthorizedAccessException) { host = null; }
        if (ours is null || ours == host)
            throw new InvalidOperationException("xenio-guest is not in a mount namespace of its own: refusing to touch the host's mounts");
    }

    private static int HostPid()
    {
        var target = File.ResolveLinkTarget("/proc/self", false)?.ToString();
        if (target is null || !int.TryParse(Path.GetFileName(target), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            throw new IOException("cannot read /proc/self");
        return pid;
    }

    private AgentConfig ReadConfig()
    {
        byte[] json;
        if (options.ConfigFile is { } file) json = File.ReadAllBytes(file);
        else json = ReadToEnd(options.ConfigFd!.Value);
        if (json.Length > MaxConfigBytes) throw new ArgumentException("configuration larger than 1 MiB");
        return JsonSerializer.Deserialize(json, AgentConfigJson.Default.AgentConfig)
            ?? throw new ArgumentException("empty configuration");
    }

    private static unsafe byte[] ReadToEnd(int fd)
    {
        var output = new MemoryStream();
        var buffer = stackalloc byte[16384];
        while (true)
        {
            var n = Read(fd, buffer, 16384);
            if (n == 0) break;
            if (n < 0)
            {
                if (Marshal.GetLastPInvokeError() == EINTR) continue;
                throw new IOException($"reading the configuration: {Marshal.GetLastPInvokeErrorMessage()}");
            }
            output.Write(new ReadOnlySpan<byte>(buffer, (int)n));
            if (output.Length > MaxConfigBytes) throw new ArgumentException("configuration larger than 1 MiB");
        }
        Close(fd);
        return output.ToArray();
    }

    private static string InitDescription(IReadOnlyList<string> argv) => argv.Count > 0 ? argv[0] : "?";

    private void Log(string message) => System.Console.Error.WriteLine($"xenio-guest[{_name}]: {message}");
}
