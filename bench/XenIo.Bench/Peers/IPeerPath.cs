namespace XenIo.Bench.Peers;

/// <summary>
/// One peer switch the tap2tap figures are compared with: it connects two fresh namespaces through
/// itself and reports one iperf3 TCP stream between them. Everything it sets up (namespaces, daemons,
/// devices, files under the work directory) is gone when <see cref="Measure"/> returns or throws.
/// </summary>
public interface IPeerPath
{
    /// <summary>The key suffix: tap2tap.tcp_gbps.&lt;Key&gt;.</summary>
    string Key { get; }

    /// <summary>What the figure is, for the report's note.</summary>
    string Description { get; }

    /// <summary>Why this peer cannot run here (a missing tool), or null.</summary>
    string? Missing();

    /// <summary>Gbit/s of one iperf3 TCP stream through the peer; <paramref name="workDirectory"/> is private to this run.</summary>
    double Measure(string workDirectory);
}
