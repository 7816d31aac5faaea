using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using XenIo.Hypervisor.Domains.Cgroups;
using XenIo.Hypervisor.Interop;
using static XenIo.Hypervisor.Interop.Libc.Proc;

namespace XenIo.Hypervisor.Domains.Spawn;

/// <summary>
/// A running guest agent as hyperd sees it: the launcher it spawned (<c>unshare</c>, its child, which
/// waits for the agent and passes its status on), the agent itself (PID 1 of the domain's namespaces),
/// the domain's cgroup and network namespace name. One thread per agent (64 KiB stack) polls the
/// launcher's pidfd and the agent's notify pipe, and reaps the launcher by pidfd, never by waitpid(-1).
/// </summary>
public sealed class GuestAgent : IAsyncDisposable
{
    private readonly ILogger _log;
    private readonly int _launcherPidfd;
    private int _agentPidfd = -1;
    private readonly int _notifyFd;
    private readonly TaskCompletionSource<AgentMessage> _hello = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<AgentMessage> _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<AgentExit> _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private AgentMessage? _shutdown;
    private string? _netns;
    private readonly Lock _gate = new();

    internal GuestAgent(string name, int launcherPid, int launcherPidfd, int notifyFd, DomainCgroup cgroup, ILogger log)
    {
        Name = name;
        LauncherPid = launcherPid;
        _launcherPidfd = launcherPidfd;
        _notifyFd = notifyFd;
        Cgroup = cgroup;
        _log = log;
        var monitor = new Thread(Monitor, 64 * 1024) { IsBackground = true, Name = $"agent {name}" };
        monitor.Start();
    }

    public string Name { get; }

    /// <summary>The launcher's pid (hyperd's child).</summary>
    public int LauncherPid { get; }

    /// <summary>The agent's pid in hyperd's pid namespace (it is 1 inside); 0 until it said hello.</summary>
    public int AgentPid { get; private set; }

    /// <summary>init's pid inside the guest.</summary>
    public int InitPid { get; private set; }

    /// <summary>The name under /run/netns, once attached.</summary>
    public string? NetnsName => _netns;

    public DomainCgroup Cgroup { get; }

    /// <summary>Completes when the agent (and its launcher) has exited and been reaped.</summary>
    public Task<AgentExit> Exited => _exited.Task;

    internal Task<AgentMessage> Hello => _hello.Task;
    internal Task<AgentMessage> Ready => _ready.Task;

    internal void Adopt(int agentPid, int agentPidfd)
    {
        AgentPid = agentPid;
        _agentPidfd = agentPidfd;
    }

    internal void SetInit(int initPid) => InitPid = initPid;

    internal void SetNetns(string name) => _netns = name;

    /// <summary>Asks the agent to shut down gracefully (SIGTERM: init gets SIGTERM, then SIGKILL after its timeout).</summary>
    public bool Terminate() => Signal(SIGTERM);

    /// <summary>Kills the agent at once; the kernel then kills every process in its pid namespace.</summary>
    public bool Kill() => Signal(SIGKILL);

    private bool Signal(int sig)
    {
        lock (_gate)
        {
            if (_exited.Task.IsCompleted) return false;
            // The pidfd cannot hit a recycled pid. Once the agent is known only it is signalled: the
            // launcher then reaps it and dies of the same signal. Killing both at once would orphan the
            // agent's zombie to the host's init. Before hello, the launcher's death kills the agent
            // (--kill-child).
            if (_agentPidfd >= 0) return PidfdSendSignal(_agentPidfd, sig) == 0;
            return sig == SIGKILL && PidfdSendSignal(_launcherPidfd, sig) == 0;
        }
    }

    /// <summary>
    /// Destroys the domain's processes and names: kills the agent and anything left in its cgroup, waits
    /// for the launcher to be reaped, removes the ip netns name and the cgroup. Safe to call again.
    /// </summary>
    public async Task<AgentExit> DestroyAsync(TimeSpan? timeout = null)
    {
        Kill();
        AgentExit exit;
        try { exit = await _exited.Task.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false); }
        catch (TimeoutException)
        {
            // Something in the domain resists (or the agent was never known): kill the whole cgroup.
            _log.LogWarning("domain {Name}: agent did not die; killing its cgroup", Name);
            Cgroup.KillAll();
            exit = await _exited.Task.WaitAsync(timeout ?? TimeSpan.FromSeconds(30)).ConfigureAwait(false);
        }
        if (_netns is { } ns)
        {
            NetnsNames.Detach(ns);
            _netns = null;
        }
        Cgroup.Remove();
        return exit;
    }

    public async ValueTask DisposeAsync() => await DestroyAsync().ConfigureAwait(false);

    private unsafe void Monitor()
    {
        var line = new byte[AgentMessage.MaxLineLength + 1];
        var lineLength = 0;
        var buffer = stackalloc byte[256];
        var notifyOpen = true;
        var discarding = false;
        var fds = stackalloc Libc.PollFd[2];
        try
        {
            while (true)
            {
                fds[0] = new Libc.PollFd { Fd = _launcherPidfd, Events = POLLIN };
                fds[1] = new Libc.PollFd { Fd = notifyOpen ? _notifyFd : -1, Events = POLLIN };
                if (Poll(fds, 2, -1) < 0)
                {
                    if (Marshal.GetLastPInvokeError() == EINTR) continue;
                    throw new IOException($"poll: {Marshal.GetLastPInvokeErrorMessage()}");
                }
                if (notifyOpen && fds[1].Revents != 0)
                {
                    var n = Read(_notifyFd, buffer, 256);
                    if (n <= 0)
                    {
                        if (n < 0 && Marshal.GetLastPInvokeError() is EINTR or EAGAIN) continue;
                        notifyOpen = false;
                    }
                    else
                    {
                        for (var i = 0; i < n; i++)
                        {
                            var b = buffer[i];
                            if (b == (byte)'\n')
                            {
                                if (!discarding) Dispatch(line.AsSpan(0, lineLength));
                                lineLength = 0;
                                discarding = false;
                            }
                            else if (lineLength < AgentMessage.MaxLineLength) line[lineLength++] = b;
                            else if (!discarding)
                            {
                                _log.LogWarning("domain {Name}: agent sent an overlong notify line; ignored", Name);
                                discarding = true;
                            }
                        }
                    }
                }
                if (fds[0].Revents != 0) break;
            }
            // The launcher exited: reap it through its pidfd and take its status.
            Libc.SigInfo info;
            int rc;
            do rc = WaitId(P_PIDFD, _launcherPidfd, &info, WEXITED);
            while (rc < 0 && Marshal.GetLastPInvokeError() == EINTR);
            if (rc < 0) throw new IOException($"waitid: {Marshal.GetLastPInvokeErrorMessage()}");
            var exit = info.Code == CLD_EXITED
                ? new AgentExit(info.Status, null, _shutdown)
                : new AgentExit(null, info.Status, _shutdown);
            _log.LogInformation("domain {Name}: agent {Exit}", Name, exit);
            lock (_gate) _exited.TrySetResult(exit);
            var early = new InvalidOperationException($"the agent of domain {Name} ended during start: {exit}");
            _hello.TrySetException(early);
            _ready.TrySetException(early);
        }
        catch (Exception e)
        {
            _log.LogError(e, "domain {Name}: agent monitor failed", Name);
            _hello.TrySetException(e);
            _ready.TrySetException(e);
            _exited.TrySetException(e);
        }
        finally
        {
            Close(_notifyFd);
            lock (_gate)
            {
                Close(_launcherPidfd);
                if (_agentPidfd >= 0) Close(_agentPidfd);
                _agentPidfd = -1;
            }
        }
    }

    private void Dispatch(ReadOnlySpan<byte> line)
    {
        if (!AgentMessage.TryParse(line, out var m))
        {
            _log.LogWarning("domain {Name}: agent sent a malformed notify line; ignored", Name);
            return;
        }
        switch (m.Kind)
        {
            case AgentMessageKind.Hello: _hello.TrySetResult(m); break;
            case AgentMessageKind.Ready: _ready.TrySetResult(m); break;
            case AgentMessageKind.Shutdown: _shutdown ??= m; break;
        }
    }
}
