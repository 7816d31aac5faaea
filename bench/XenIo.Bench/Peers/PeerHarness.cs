namespace XenIo.Bench.Peers;

/// <summary>
/// The peer benchmark harness (shared by the vswitch and netback tap2tap figures): measures every peer
/// path in turn and reports <c>tap2tap.tcp_gbps.&lt;peer&gt;</c>; a peer that is missing or fails is
/// reported unavailable with the reason and the run goes on. Returns the figures measured, by key.
/// </summary>
public static class PeerHarness
{
    public static IReadOnlyList<IPeerPath> AllPeers() =>
        [new KernelBridgePeer(), new OvsNetdevPeer(userspaceTso: false), new OvsNetdevPeer(userspaceTso: true), new VdePeer()];

    /// <summary>Why no iperf3 path can be measured here (not root, no iperf3), or null; <paramref name="rootFor"/> says what root is needed for.</summary>
    public static string? Unrunnable(string rootFor) =>
        Environment.UserName != "root" ? $"needs root ({rootFor})"
        : PeerProcesses.Which("iperf3") is null ? "iperf3 is not installed" : null;

    public static Dictionary<string, double> Run(BenchContext context, IEnumerable<IPeerPath> peers, string prefix = "tap2tap.tcp_gbps.", CancellationToken cancellationToken = default)
    {
        var results = new Dictionary<string, double>();
        var why = Unrunnable("namespaces, TAP devices");
        foreach (var peer in peers)
        {
            var key = prefix + peer.Key;
            if (cancellationToken.IsCancellationRequested)
            {
                context.Unavailable(key, "cancelled");
                continue;
            }
            var missing = why ?? peer.Missing();
            if (missing is not null)
            {
                context.Unavailable(key, missing);
                continue;
            }
            try
            {
                var gbps = peer.Measure(Path.Combine(context.WorkDirectory, "peers"));
                results[peer.Key] = gbps;
                context.Report(key, gbps, "Gbit/s", $"{peer.Description}; one iperf3 TCP stream, {Iperf.Seconds} s, MTU 1500");
            }
            catch (Exception e)
            {
                context.Unavailable(key, $"{peer.Description} failed: {e.Message}");
            }
        }
        return results;
    }
}
