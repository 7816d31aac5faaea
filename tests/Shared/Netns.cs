using System.Diagnostics;

namespace XenIo.Tests;

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

    public (int ExitCode, string Output) TryExec(params string[] args) => RunCode("ip", ["netns", "exec", Name, .. args]);

    public Process Start(params string[] args)
    {
        var psi = new ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "netns", "exec", Name }.Concat(args)) psi.ArgumentList.Add(a);
        return Process.Start(psi)!;
    }

    /// <summary>Moves a host interface into the namespace, gives it an address and brings it up.</summary>
    public void Adopt(string ifname, string? cidr)
    {
        Run("ip", "link", "set", ifname, "netns", Name);
        if (cidr is not null) Exec("ip", "addr", "add", cidr, "dev", ifname);
        Exec("ip", "link", "set", ifname, "up");
    }

    public static string Run(string file, params string[] args) => Run(file, args, allowFailure: false);

    public static string Run(string file, string[] args, bool allowFailure)
    {
        var (code, output) = RunCode(file, args);
        if (code != 0 && !allowFailure) throw new InvalidOperationException($"{file} {string.Join(' ', args)} exited {code}: {output}");
        return output;
    }

    public static (int, string) RunCode(string file, string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var error = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output + error.Result);
    }

    public void Dispose() => Run("ip", ["netns", "del", Name], allowFailure: true);
}
