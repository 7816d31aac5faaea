namespace XenIo.Bench.Peers;

/// <summary>
/// VDE: a private <c>vde_switch</c> (control directory under the work directory) with two TAP ports,
/// each attached by its own <c>vde_plug2tap</c>, the TAPs moved into the namespaces.
/// </summary>
public sealed class VdePeer : IPeerPath
{
    public string Key => "vde";
    public string Description => "vde_switch with two TAP ports (vde_plug2tap)";

    public string? Missing()
    {
        foreach (var tool in new[] { "vde_switch", "vde_plug2tap" })
            if (PeerProcesses.Which(tool) is null) return $"{tool} is not installed (Debian package vde2)";
        return null;
    }

    public double Measure(string workDirectory)
    {
        var dir = Path.Combine(workDirectory, "vde");
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        Directory.CreateDirectory(dir);
        var control = Path.Combine(dir, "switch");
        using var a = new BenchNamespace("v-a");
        using var b = new BenchNamespace("v-b");
        using var processes = new PeerProcesses();
        var sw = processes.Start("vde_switch", ["--sock", control, "--mgmt", Path.Combine(dir, "mgmt")]);
        PeerProcesses.WaitFor(() => File.Exists(Path.Combine(control, "ctl")) || sw.HasExited, "vde_switch control socket");
        PeerProcesses.EnsureRunning(sw, "vde_switch");
        foreach (var tap in new[] { "xvp-v-a", "xvp-v-b" })
        {
            var plug = processes.Start("vde_plug2tap", ["--sock", control, tap]);
            PeerProcesses.WaitFor(() => Directory.Exists($"/sys/class/net/{tap}") || plug.HasExited, $"vde_plug2tap {tap}");
            PeerProcesses.EnsureRunning(plug, "vde_plug2tap");
        }
        a.Adopt("xvp-v-a", "198.18.63.1/24");
        b.Adopt("xvp-v-b", "198.18.63.2/24");
        return Iperf.TcpGbps(a, b, "198.18.63.2");
    }
}
