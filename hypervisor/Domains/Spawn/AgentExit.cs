namespace XenIo.Hypervisor.Domains.Spawn;

/// <summary>
/// How an agent ended: its launcher's exit status (which is the agent's: unshare --fork passes the
/// child's exit code on and dies of the same signal) and the shutdown it reported, if any.
/// </summary>
public sealed record AgentExit(int? ExitCode, int? Signal, AgentMessage? Shutdown)
{
    /// <summary>
    /// The domain's shutdown reason: what the agent reported if it then exited cleanly, otherwise crash
    /// (an agent that dies is a crashed domain).
    /// </summary>
    public ShutdownReason Reason =>
        ExitCode == 0 && Shutdown is { } s ? s.Reason : ShutdownReason.Crash;

    public override string ToString() =>
        (Signal is { } sig ? $"killed by signal {sig}" : $"exit {ExitCode}")
        + (Shutdown is { } s ? $", reported {s.Format().TrimEnd()}" : "");
}
