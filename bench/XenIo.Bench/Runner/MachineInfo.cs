using System.Diagnostics;

namespace XenIo.Bench.Runner;

/// <summary>What the figures were measured on, for the header of latest.md.</summary>
internal sealed record MachineInfo(int Cpus, string CpuModel, string Kernel, string Commit)
{
    public static MachineInfo Collect(string repoRoot)
    {
        string model = "unknown";
        try
        {
            model = File.ReadLines("/proc/cpuinfo")
                .Where(l => l.StartsWith("model name", StringComparison.Ordinal))
                .Select(l => l[(l.IndexOf(':') + 1)..].Trim())
                .FirstOrDefault() ?? model;
        }
        catch (IOException) { }
        string kernel = "unknown";
        try { kernel = File.ReadAllText("/proc/sys/kernel/osrelease").Trim(); }
        catch (IOException) { }

        var commit = Git(repoRoot, "rev-parse", "--short", "HEAD") ?? "unknown";
        if (!string.IsNullOrWhiteSpace(Git(repoRoot, "status", "--porcelain", "--untracked-files=no"))) commit += "-dirty";
        return new MachineInfo(Environment.ProcessorCount, model, kernel, commit);
    }

    private static string? Git(string repoRoot, params string[] args)
    {
        try
        {
            var psi = new ProcessStartInfo("git") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = repoRoot };
            foreach (var a in args) psi.ArgumentList.Add(a);
            using var p = Process.Start(psi);
            if (p is null) return null;
            var output = p.StandardOutput.ReadToEnd().Trim();
            p.WaitForExit();
            return p.ExitCode == 0 ? output : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }
}
