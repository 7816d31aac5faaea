namespace XenIo.Bench.Peers;

/// <summary>
/// The Linux bridge with veth pairs (GSO 64 KiB frames end to end): the kernel's tier. The bridge sits in
/// a third namespace of its own, so nothing touches the host's network.
/// </summary>
public sealed class KernelBridgePeer : IPeerPath
{
    public string Key => "kernel_bridge";
    public string Description => "Linux bridge + veth pairs";

    public string? Missing() => PeerProcesses.Which("ip") is null ? "iproute2 (ip) is not installed" : null;

    public double Measure(string workDirectory)
    {
        using var a = new BenchNamespace("kb-a");
        using var b = new BenchNamespace("kb-b");
        using var br = new BenchNamespace("kb-br");
        br.Exec("ip", "link", "add", "br0", "type", "bridge");
        br.Exec("ip", "link", "set", "br0", "up");
        foreach (var (ns, port, cidr) in new[] { (a, "pa", "198.18.61.1/24"), (b, "pb", "198.18.61.2/24") })
        {
            br.Exec("ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns.Name);
            br.Exec("ip", "link", "set", port, "master", "br0");
            br.Exec("ip", "link", "set", port, "up");
            ns.Configure("eth0", cidr);
        }
        return Iperf.TcpGbps(a, b, "198.18.61.2");
    }
}
