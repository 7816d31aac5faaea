using System.Diagnostics;

namespace XenIo.Bench.Peers;

/// <summary>
/// A fresh network namespace for one benchmark path: named with the harness's prefix, loopback up, no
/// default route (only the 198.18.0.0/15 addresses the harness gives it), deleted on dispose, which also
/// destroys every veth and TAP still inside it.
/// </summary>
public sealed class BenchNamespace : IDisposable
{
    /// <summary>Every namespace the harness creates starts with this, so a stale one from a killed run is recognisable.</summary>
    public const string Prefix = "xvp-";

    public BenchNamespace(string suffix)
    {
        Name = Prefix + suffix;
        PeerProcesses.Run("ip", ["netns", "del", Name], allowFailure: true);
        PeerProcesses.Run("ip", ["netns", "add", Name]);
        try
        {
            Exec("ip", "link", "set", "lo", "up");
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public string Name { get; }

    public string Exec(params string[] args) => PeerProcesses.Run("ip", ["netns", "exec", Name, .. args]);

    /// <summary>Starts a long-running command inside the namespace, owned by <paramref name="processes"/>.</summary>
    public Process Start(PeerProcesses processes, params string[] args) => processes.Start("ip", ["netns", "exec", Name, .. args]);

    /// <summary>Moves a host interface (a veth end or a TAP) in, addresses it and brings it up.</summary>
    public void Adopt(string ifname, string cidr)
    {
        PeerProcesses.Run("ip", ["link", "set", ifname, "netns", Name]);
        Configure(ifname, cidr);
    }

    public void Configure(string ifname, string cidr)
    {
        Exec("ip", "addr", "add", cidr, "dev", ifname);
        Exec("ip", "link", "set", ifname, "up");
    }

    public void Dispose() => PeerProcesses.Run("ip", ["netns", "del", Name], allowFailure: true);
}
