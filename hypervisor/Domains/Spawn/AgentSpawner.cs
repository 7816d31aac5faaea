using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using XenIo.Hypervisor.Domains.Cgroups;
using static XenIo.Hypervisor.Interop.Libc.Proc;

namespace XenIo.Hypervisor.Domains.Spawn;

/// <summary>
/// Starts guest agents already inside their own net, mnt, pid, uts and ipc namespaces (and user, for
/// <c>isolation=userns</c>), in the domain's cgroup, with exactly their descriptors at <see cref="AgentFds"/>
/// numbers. A running .NET process must never setns or fork, so the namespaces come from util-linux's
/// <c>unshare --fork --kill-child</c> as the spawned program: it unshares, forks the agent as PID 1 of
/// the new pid namespace, waits for it and exits with its status (dying of the same signal), and its
/// death SIGKILLs the agent. Under userns, <c>setpriv</c> first drops to the domain's unprivileged host id
/// so that the new user namespace maps guest root to it (no newuidmap needed).
/// <para>
/// Start-up handshake on two pipes: the agent writes <c>hello pid=N</c> (its pid as hyperd sees it,
/// read from the host's /proc before it mounts its own), hyperd checks that pid really is its launcher's
/// child and PID 1 of a new pid namespace, moves it into the cgroup (before any guest process exists:
/// the launcher may have forked before it was moved itself), names the network namespace, then writes
/// the JSON configuration; the agent sets up and answers <c>ready init=N</c>.
/// </para>
/// </summary>
public sealed class AgentSpawner(CgroupLayout layout, KernelNames names, ILogger? log = null)
{
    private readonly ILogger _log = log ?? NullLogger.Instance;

    public string UnsharePath { get; init; } = "/usr/bin/unshare";
    public string SetprivPath { get; init; } = "/usr/bin/setpriv";

    public KernelNames Names => names;

    /// <summary>
    /// How to run the agent when the caller does not say: <c>XENIO_GUEST_AGENT</c> if set, else a
    /// <c>xenio-guest</c> executable (NativeAOT or apphost) next to the running program, else
    /// <c>dotnet xenio-guest.dll</c> from there.
    /// </summary>
    public static IReadOnlyList<string> DefaultAgentCommand()
    {
        if (Environment.GetEnvironmentVariable("XENIO_GUEST_AGENT") is { Length: > 0 } configured) return [configured];
        var dir = AppContext.BaseDirectory;
        var exe = Path.Combine(dir, "xenio-guest");
        if (File.Exists(exe)) return [exe];
        var dll = Path.Combine(dir, "xenio-guest.dll");
        if (File.Exists(dll) && Environment.ProcessPath is { } host && Path.GetFileNameWithoutExtension(host) == "dotnet")
            return [host, dll];
        throw new FileNotFoundException($"no guest agent (xenio-guest) next to {dir}; set XENIO_GUEST_AGENT");
    }

    public async Task<GuestAgent> StartAsync(AgentSpawnRequest request, CancellationToken cancellationToken = default)
    {
        var config = request.Config with
        {
            MemoryFd = request.Memory is null ? null : AgentFds.Memory,
            HypercallFd = request.Hypercall is null ? null : AgentFds.Hypercall,
            ConsoleFd = request.Console is null ? null : AgentFds.Console,
            Userns = request.Userns,
        };
        var netns = names.Netns(config.Name);
        if (File.Exists(NetnsNames.PathOf(netns)))
            throw new InvalidOperationException($"network namespace name '{netns}' is already in use");
        var cgroup = DomainCgroup.Create(layout, names, config.Name, request.Limits);

        int configRead = -1, configWrite = -1, notifyRead = -1, notifyWrite = -1;
        GuestAgent? agent = null;
        try
        {
            (configRead, configWrite) = Pipe();
            (notifyRead, notifyWrite) = Pipe();

            var argv = Argv(request);
            var spawn = new SpawnCommand(argv[0], argv, AgentEnvironment())
                { WorkingDirectory = "/" };
            spawn.Open(0, "/dev/null", O_RDONLY);
            if (request.Log is { } logHandle) spawn.Inherit(logHandle, 1).Inherit(logHandle, 2);
            else spawn.Open(1, "/dev/null", O_WRONLY).Open(2, "/dev/null", O_WRONLY);
            if (request.Memory is { } mem) spawn.Inherit(mem, AgentFds.Memory);
            if (request.Hypercall is { } hc) spawn.Inherit(hc, AgentFds.Hypercall);
            spawn.InheritFd(configRead, AgentFds.Config).InheritFd(notifyWrite, AgentFds.Notify);
            if (request.Console is { } con) spawn.Inherit(con, AgentFds.Console);
            for (var i = 0; i < request.Extra.Count; i++) spawn.Inherit(request.Extra[i], AgentFds.FirstExtra + i);

            var launcher = spawn.Start();
            Close(configRead); configRead = -1;
            Close(notifyWrite); notifyWrite = -1;
            var pidfd = PidfdOpen(launcher);
            if (pidfd < 0) throw new IOException($"pidfd_open({launcher}): {Marshal.GetLastPInvokeErrorMessage()}");
            try { cgroup.AddProcess(launcher); }
            catch (IOException e) { _log.LogDebug("domain {Name}: launcher left before joining its cgroup: {Error}", config.Name, e.Message); }
            agent = new GuestAgent(config.Name, launcher, pidfd, notifyRead, cgroup, _log);
            notifyRead = -1;

            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(request.StartTimeout);
            var hello = await agent.Hello.WaitAsync(timeout.Token).ConfigureAwait(false);
            var agentPid = hello.Value;
            if (!IsAgentOf(agentPid, launcher))
                throw new InvalidOperationException($"domain {config.Name}: the agent's hello names pid {agentPid}, which is not PID 1 of a pid namespace under launcher {launcher}");
            var agentPidfd = PidfdOpen(agentPid);
            if (agentPidfd < 0) throw new IOException($"pidfd_open({agentPid}): {Marshal.GetLastPInvokeErrorMessage()}");
            agent.Adopt(agentPid, agentPidfd);
            cgroup.AddProcess(agentPid);
            NetnsNames.Attach(netns, agentPid);
            agent.SetNetns(netns);

            WriteAll(configWrite, JsonSerializer.SerializeToUtf8Bytes(config, AgentConfigJson.Default.AgentConfig));
            Close(configWrite); configWrite = -1;

            var ready = await agent.Ready.WaitAsync(timeout.Token).ConfigureAwait(false);
            agent.SetInit(ready.Value);
            _log.LogInformation("domain {Name}: agent {Pid} running init {Init}", config.Name, agentPid, ready.Value);
            return agent;
        }
        catch (Exception e)
        {
            foreach (var fd in new[] { configRead, configWrite, notifyRead, notifyWrite })
                if (fd >= 0) Close(fd);
            if (agent is not null)
            {
                var exit = await agent.DestroyAsync().ConfigureAwait(false);
                if (e is OperationCanceledException && !cancellationToken.IsCancellationRequested)
                    throw new TimeoutException($"domain {config.Name}: the agent did not start within {request.StartTimeout.TotalSeconds:0.#} s ({exit})", e);
            }
            else
            {
                cgroup.Remove();
            }
            throw;
        }
    }

    private List<string> Argv(AgentSpawnRequest request)
    {
        var argv = new List<string>();
        if (request.Userns)
        {
            var id = request.UsernsHostId.ToString(CultureInfo.InvariantCulture);
            ArgumentOutOfRangeException.ThrowIfLessThan(request.UsernsHostId, 1, nameof(request));
            argv.AddRange([SetprivPath, $"--reuid={id}", $"--regid={id}", "--clear-groups", "--"]);
        }
        argv.AddRange([UnsharePath, "--fork", "--kill-child", "--pid", "--net", "--mount", "--uts", "--ipc",
            "--propagation", "private"]);
        if (request.Userns) argv.AddRange(["--user", "--map-root-user"]);
        argv.Add("--");
        if (request.AgentCommand.Count == 0) throw new ArgumentException("no agent command", nameof(request));
        argv.AddRange(request.AgentCommand);
        argv.AddRange(["--config-fd", AgentFds.Config.ToString(CultureInfo.InvariantCulture),
            "--notify-fd", AgentFds.Notify.ToString(CultureInfo.InvariantCulture)]);
        return argv;
    }

    /// <summary>
    /// The agent's environment: a PATH, and no .NET diagnostics server (it would create a socket in the
    /// host's /tmp before the agent mounts its own, and leave it behind).
    /// </summary>
    private static List<string> AgentEnvironment()
    {
        var env = new List<string> { "PATH=" + SpawnCommand.DefaultPath, "DOTNET_EnableDiagnostics=0" };
        if (Environment.GetEnvironmentVariable("DOTNET_ROOT") is { Length: > 0 } root) env.Add("DOTNET_ROOT=" + root);
        return env;
    }

    /// <summary>True if <paramref name="pid"/> is a child of <paramref name="launcher"/> and PID 1 of its own pid namespace.</summary>
    internal static bool IsAgentOf(int pid, int launcher)
    {
        string[] lines;
        try { lines = File.ReadAllLines($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/status"); }
        catch (IOException) { return false; }
        catch (UnauthorizedAccessException) { return false; }
        var parentOk = false;
        var nsOk = false;
        foreach (var l in lines)
        {
            if (l.StartsWith("PPid:", StringComparison.Ordinal))
                parentOk = l.AsSpan(5).Trim().SequenceEqual(launcher.ToString(CultureInfo.InvariantCulture));
            else if (l.StartsWith("NSpid:", StringComparison.Ordinal))
            {
                var ids = l[6..].Split('\t', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                nsOk = ids.Length >= 2 && ids[^1] == "1" && ids[0] == pid.ToString(CultureInfo.InvariantCulture);
            }
        }
        return parentOk && nsOk;
    }

    private static unsafe (int Read, int Write) Pipe()
    {
        var fds = stackalloc int[2];
        if (Pipe2(fds, O_CLOEXEC) != 0) throw new IOException($"pipe2: {Marshal.GetLastPInvokeErrorMessage()}");
        return (fds[0], fds[1]);
    }

    private static unsafe void WriteAll(int fd, byte[] data)
    {
        fixed (byte* p = data)
        {
            var done = 0;
            while (done < data.Length)
            {
                var n = Write(fd, p + done, (nuint)(data.Length - done));
                if (n < 0)
                {
                    if (Marshal.GetLastPInvokeError() == EINTR) continue;
                    throw new IOException($"writing the agent's configuration: {Marshal.GetLastPInvokeErrorMessage()}");
                }
                done += (int)n;
            }
        }
    }
}
