using System.Diagnostics;

namespace XenIo.Net.Tests.Net;

/// <summary>A network namespace a test creates and deletes (198.18.0.0/15 addresses only, no default route).</summary>
internal sealed class Netns : IDisposable
{
    public Netns(string name)
    {
        Name = name;
        Run("ip", ["netns", "del", name], allowFailure: true);
        Run("ip", "netns", "add", name);
        Exec("ip", "link", "set", "lo", "up");
    }

    public string Name { get; }

    public string Exec(params string[] args) => Run("ip", ["netns", "exec", Name, .. args]);

    public static string Run(string file, params string[] args) => Run(file, args, allowFailure: false);

    public static string Run(string file, string[] args, bool allowFailure)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var output = p.StandardOutput.ReadToEndAsync();
        var error = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0 && !allowFailure)
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} exited {p.ExitCode}: {error}");
        return output.Result;
    }

    public void Dispose() => Run("ip", ["netns", "del", Name], allowFailure: true);
}
