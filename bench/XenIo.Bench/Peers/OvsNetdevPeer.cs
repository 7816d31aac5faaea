namespace XenIo.Bench.Peers;

/// <summary>
/// Open vSwitch's userspace datapath (<c>datapath_type=netdev</c>) with two TAP ports moved into the
/// namespaces, userspace TSO off or on. It runs a private ovsdb-server and ovs-vswitchd owned by this
/// process: their database, sockets, pid files and logs live under the run's work directory
/// (OVS_RUNDIR/OVS_DBDIR/OVS_LOGDIR point there too), <c>--disable-system</c> keeps vswitchd away from
/// the kernel datapath, so neither a system Open vSwitch service nor its files are touched.
/// </summary>
public sealed class OvsNetdevPeer(bool userspaceTso) : IPeerPath
{
    private const string Schema = "/usr/share/openvswitch/vswitch.ovsschema";

    public string Key => userspaceTso ? "ovs_netdev_tso" : "ovs_netdev";
    public string Description => $"Open vSwitch userspace datapath, TAP ports, userspace TSO {(userspaceTso ? "on" : "off")}";

    public string? Missing()
    {
        foreach (var tool in new[] { "ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl" })
            if (PeerProcesses.Which(tool) is null) return $"{tool} is not installed (Debian package openvswitch-switch)";
        return File.Exists(Schema) ? null : $"{Schema} is missing (openvswitch-common)";
    }

    public double Measure(string workDirectory)
    {
        var dir = Path.Combine(workDirectory, $"ovs-{Key}");
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        Directory.CreateDirectory(dir);
        var env = new Dictionary<string, string> { ["OVS_RUNDIR"] = dir, ["OVS_DBDIR"] = dir, ["OVS_LOGDIR"] = dir, ["OVS_PKGDATADIR"] = "/usr/share/openvswitch" };
        var db = Path.Combine(dir, "conf.db");
        var dbSocket = "unix:" + Path.Combine(dir, "db.sock");
        var tapA = userspaceTso ? "xvp-ot-a" : "xvp-o-a";
        var tapB = userspaceTso ? "xvp-ot-b" : "xvp-o-b";
        var bridge = userspaceTso ? "xvp-ot-br" : "xvp-o-br";

        using var a = new BenchNamespace(userspaceTso ? "ot-a" : "o-a");
        using var b = new BenchNamespace(userspaceTso ? "ot-b" : "o-b");
        try
        {
            return Run(dir, env, db, dbSocket, bridge, tapA, tapB, a, b);
        }
        finally
        {
            // ovs-vswitchd makes its TAP devices persistent: whatever is still in the host namespace
            // (the bridge's own port, a port that never moved) outlives the daemon unless deleted.
            foreach (var link in new[] { bridge, tapA, tapB })
                if (Directory.Exists($"/sys/class/net/{link}")) PeerProcesses.Run("ip", ["link", "del", link], allowFailure: true);
        }
    }

    /// <summary>The last errors ovs-vswitchd logged, to explain a failure; empty when none.</summary>
    private static string ErrorsLogged(string dir)
    {
        var path = Path.Combine(dir, "ovs-vswitchd.log");
        if (!File.Exists(path)) return "";
        return string.Join(" / ", File.ReadLines(path).Where(l => l.Contains("|ERR|") || l.Contains("|EMER|")).TakeLast(3));
    }

    private double Run(string dir, Dictionary<string, string> env, string db, string dbSocket, string bridge, string tapA, string tapB, BenchNamespace a, BenchNamespace b)
    {
        using var processes = new PeerProcesses();
        PeerProcesses.Run("ovsdb-tool", ["create", db, Schema], env);
        var server = processes.Start("ovsdb-server", [db, $"--remote=p{dbSocket}", $"--pidfile={Path.Combine(dir, "ovsdb-server.pid")}",
            $"--unixctl={Path.Combine(dir, "ovsdb-server.ctl")}", $"--log-file={Path.Combine(dir, "ovsdb-server.log")}"], env);
        PeerProcesses.WaitFor(() => File.Exists(Path.Combine(dir, "db.sock")) || server.HasExited, "ovsdb-server socket");
        PeerProcesses.EnsureRunning(server, "ovsdb-server");
        string Vsctl(params string[] args) => PeerProcesses.Run("ovs-vsctl", [$"--db={dbSocket}", "--timeout=20", .. args], env);
        // userspace-tso-enable is read once when vswitchd starts: set it before.
        Vsctl("--no-wait", "init");
        Vsctl("--no-wait", "set", "Open_vSwitch", ".", $"other_config:userspace-tso-enable={(userspaceTso ? "true" : "false")}");
        var vswitchd = processes.Start("ovs-vswitchd", [dbSocket, "--disable-system", $"--pidfile={Path.Combine(dir, "ovs-vswitchd.pid")}",
            $"--unixctl={Path.Combine(dir, "ovs-vswitchd.ctl")}", $"--log-file={Path.Combine(dir, "ovs-vswitchd.log")}"], env);
        try
        {
            Vsctl("add-br", bridge, "--", "set", "Bridge", bridge, "datapath_type=netdev");
            Vsctl("add-port", bridge, tapA, "--", "set", "Interface", tapA, "type=tap");
            Vsctl("add-port", bridge, tapB, "--", "set", "Interface", tapB, "type=tap");
            PeerProcesses.EnsureRunning(vswitchd, "ovs-vswitchd");
            PeerProcesses.WaitFor(() => Directory.Exists($"/sys/class/net/{tapA}") && Directory.Exists($"/sys/class/net/{tapB}"), "OVS TAP ports");
            a.Adopt(tapA, "198.18.62.1/24");
            b.Adopt(tapB, "198.18.62.2/24");
            return Iperf.TcpGbps(a, b, "198.18.62.2");
        }
        catch (Exception e) when (ErrorsLogged(dir) is { Length: > 0 } logged)
        {
            throw new InvalidOperationException($"{e.Message} (ovs-vswitchd: {logged})", e);
        }
        // Disposal stops vswitchd, then ovsdb-server; the caller deletes leftover devices and the namespaces.
    }
}
