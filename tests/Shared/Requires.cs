using Xunit;

namespace XenIo.Tests;

/// <summary>
/// Preconditions for tests that need root, namespaces or a real client. A missing one skips the test
/// with the reason (Skip.*), never passes it silently. Use with [SkippableFact] / [SkippableTheory].
/// </summary>
public static class Requires
{
    public static bool IsRoot => Environment.UserName == "root" || geteuid() == 0;

    public static void Root(string why = "creates namespaces or devices") =>
        Skip.IfNot(IsRoot, $"needs root ({why}); CI runs as root");

    /// <summary>Skips unless <paramref name="tool"/> is on PATH; `make deps` installs every tool tests use.</summary>
    public static string Tool(string tool)
    {
        var path = Which(tool);
        Skip.If(path is null, $"'{tool}' is not installed: run `make deps`");
        return path!;
    }

    public static string? Which(string tool)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':'))
        {
            var candidate = Path.Combine(dir, tool);
            if (File.Exists(candidate)) return candidate;
        }
        foreach (var dir in new[] { "/usr/sbin", "/sbin", "/usr/local/sbin" })
        {
            var candidate = Path.Combine(dir, tool);
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = false)]
    private static extern uint geteuid();
}
