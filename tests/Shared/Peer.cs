using System.Diagnostics;

namespace XenIo.Tests;

/// <summary>Starts the test peer (tests/XenIo.TestPeer) as a separate OS process playing a role.</summary>
public static class Peer
{
    public static string AssemblyPath => Path.Combine(AppContext.BaseDirectory, "XenIo.TestPeer.dll");

    /// <summary>Starts <c>dotnet XenIo.TestPeer.dll role args…</c>; stdout and stderr are redirected.</summary>
    public static Process Start(string role, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(AssemblyPath);
        psi.ArgumentList.Add(role);
        foreach (var a in args) psi.ArgumentList.Add(a);
        return Process.Start(psi) ?? throw new InvalidOperationException("could not start the test peer");
    }
}
