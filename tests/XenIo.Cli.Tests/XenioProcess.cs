using System.Diagnostics;

namespace XenIo.Cli.Tests;

/// <summary>Runs <c>xenio …</c> as a user does, in its own process (exit code, stdout and stderr as they are).</summary>
internal static class XenioProcess
{
    private static string XenioDll => Path.Combine(AppContext.BaseDirectory, "xenio.dll");

    public static (int Code, string Out, string Err) Run(string runDirectory, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(XenioDll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.ArgumentList.Add("--run-dir");
        psi.ArgumentList.Add(runDirectory);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output, err.Result);
    }
}
