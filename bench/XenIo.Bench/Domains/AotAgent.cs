using System.Diagnostics;

namespace XenIo.Bench.Domains;

/// <summary>
/// The NativeAOT guest agent the domain benchmarks run (what `make build` ships), published into the
/// work directory once per bench process: the first benchmark that needs it publishes, the rest reuse it,
/// and an agent left in the directory by an earlier run is never trusted.
/// </summary>
public static class AotAgent
{
    private static readonly SemaphoreSlim s_gate = new(1, 1);
    private static string? s_published;

    /// <summary>The agent's path, or null when the publish failed.</summary>
    public static async Task<string?> PublishAsync(BenchContext context, CancellationToken cancellationToken)
    {
        await s_gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (s_published is { } done && File.Exists(done)) return done;
            var dir = Path.Combine(context.WorkDirectory, "agent-aot");
            var agent = Path.Combine(dir, "xenio-guest");
            using var publish = Process.Start(new ProcessStartInfo("dotnet",
                ["publish", Path.Combine(context.RepoRoot, "guest", "XenIo.Guest.csproj"), "-c", "Release", "-r", "linux-x64",
                 "-p:PublishAot=true", "-o", dir, "-v", "q", "-nologo"]))!;
            await publish.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
            s_published = publish.ExitCode == 0 && File.Exists(agent) ? agent : null;
            return s_published;
        }
        finally
        {
            s_gate.Release();
        }
    }
}
