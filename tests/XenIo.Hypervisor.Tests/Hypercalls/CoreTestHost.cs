using System.Diagnostics;
using XenIo.Hypervisor.Domains;

namespace XenIo.Hypervisor.Tests.Hypercalls;

/// <summary>A <see cref="CoreHost"/> in a fresh temporary run directory, removed afterwards.</summary>
internal sealed class CoreTestHost : IDisposable
{
    public CoreTestHost(long budgetPages = 1 << 16)
    {
        RunDirectory = Path.Combine(Path.GetTempPath(), $"xenio-core-{Environment.ProcessId}-{Guid.NewGuid():N}"[..40]);
        Host = new CoreHost(RunDirectory, budgetPages);
    }

    public string RunDirectory { get; }

    public CoreHost Host { get; }

    public string HandoffPath(string name) => Path.Combine(RunDirectory, name + ".handoff");

    /// <summary>Reads stdout lines until one starts with <paramref name="prefix"/>; fails with the peer's stderr if it exits first.</summary>
    public static string ReadLineStartingWith(Process peer, string prefix)
    {
        while (true)
        {
            var read = peer.StandardOutput.ReadLineAsync();
            if (!read.Wait(TimeSpan.FromSeconds(60))) throw new TimeoutException($"peer said nothing starting with '{prefix}'");
            var line = read.Result;
            if (line is null) throw new InvalidOperationException($"peer exited before '{prefix}': {peer.StandardError.ReadToEnd()}");
            if (line.StartsWith(prefix, StringComparison.Ordinal)) return line;
        }
    }

    public static void WaitForExit(Process peer, int timeoutMs = 120_000)
    {
        if (!peer.WaitForExit(timeoutMs))
        {
            peer.Kill();
            throw new TimeoutException("peer did not finish");
        }
    }

    public void Dispose()
    {
        Host.Dispose();
        try { Directory.Delete(RunDirectory, recursive: true); } catch (IOException) { }
    }
}
