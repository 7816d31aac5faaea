namespace XenIo.Bench.Peers;

/// <summary>
/// VDE: a private <c>vde_switch</c> (control directory under the work directory) with two TAP ports of
/// its own (<c>--tap</c>, the switch reads and writes them itself, one frame per syscall), the TAPs
/// moved into the namespaces. The switch's console is its stdin, held open by the harness.
/// </summary>
public sealed class VdePeer : IPeerPath
{
    private const string TapA = "xvp-v-a";
    private const string TapB = "xvp-v-b";

    public string Key => "vde";
    public string Description => "vde_switch with two TAP ports";

    public string? Missing() => PeerProcesses.Which("vde_switch") is null ? "vde_switch is not installed (Debian package vde2)" : null;

    public double Measure(string workDirectory)
    {
        var dir = Path.Combine(workDirectory, "vde");
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        Directory.CreateDirectory(dir);
        using var a = new BenchNamespace("v-a");
        using var b = new BenchNamespace("v-b");
        try
        {
            using var processes = new PeerProcesses();
            var sw = processes.Start("vde_switch", ["--sock", Path.Combine(dir, "switch"), "--tap", TapA, "--tap", TapB]);
            PeerProcesses.WaitFor(() => sw.HasExited || (Directory.Exists($"/sys/class/net/{TapA}") && Directory.Exists($"/sys/class/net/{TapB}")), "vde_switch TAP ports");
            PeerProcesses.EnsureRunning(sw, "vde_switch");
            a.Adopt(TapA, "198.18.63.1/24");
            b.Adopt(TapB, "198.18.63.2/24");
            return Iperf.TcpGbps(a, b, "198.18.63.2");
        }
        finally
        {
            // A TAP that never moved stays in the host namespace if the switch made it persistent.
            foreach (var link in new[] { TapA, TapB })
                if (Directory.Exists($"/sys/class/net/{link}")) PeerProcesses.Run("ip", ["link", "del", link], allowFailure: true);
        }
    }
}
