using System.Diagnostics;
using XenIo.Tests;
using Xunit;

namespace XenIo.Integration.Tests.Up;

/// <summary>examples/systemd/*: systemd-analyze verify accepts every unit without a warning.</summary>
public sealed class SystemdUnitTests
{
    [SkippableFact]
    public void Example_units_verify_cleanly()
    {
        Requires.Tool("systemd-analyze");
        var repo = RepoBuild.Root();
        Skip.If(repo is null, "the repository (XenIo.sln) is not above the test binaries");
        var units = Directory.GetFiles(Path.Combine(repo!, "examples", "systemd"));
        Assert.Contains(units, u => u.EndsWith("xenio.service", StringComparison.Ordinal));
        Assert.Contains(units, u => u.EndsWith("xenio-hyperd.service", StringComparison.Ordinal));
        Assert.Contains(units, u => u.EndsWith("xenio-netback.service", StringComparison.Ordinal));
        Assert.Contains(units, u => u.EndsWith("xenio-consoled.service", StringComparison.Ordinal));
        Assert.Contains(units, u => u.EndsWith("xenio-blkback.service", StringComparison.Ordinal));
        var dir = Directory.CreateTempSubdirectory("xenio-units-");
        try
        {
            // verify also checks that ExecStart's binary exists; `make install` may not have run here, so the
            // installed path is swapped for one that exists and everything else is checked as shipped.
            foreach (var u in units)
                File.WriteAllText(Path.Combine(dir.FullName, Path.GetFileName(u)), File.ReadAllText(u).Replace("/usr/local/bin/xenio", "/bin/true"));
            var psi = new ProcessStartInfo("systemd-analyze") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            psi.ArgumentList.Add("verify");
            foreach (var u in Directory.GetFiles(dir.FullName)) psi.ArgumentList.Add(u);
            using var p = Process.Start(psi)!;
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEnd();
            p.WaitForExit();
            // verify exits 0 on unknown keys and bad values (it only warns), so its output must be empty too.
            Assert.True(p.ExitCode == 0 && stderr.Length == 0 && stdout.Result.Length == 0, $"status {p.ExitCode}\n{stdout.Result}{stderr}");
        }
        finally
        {
            dir.Delete(true);
        }
    }
}
