namespace XenIo.Bench.Peers;

/// <summary>
/// Ours against one peer in adjacent pairs, alternating which of the two goes first, and the medians
/// of each side and of the pairs' ratios. One 5-second iperf3 stream on a shared 2-core machine swings
/// by ±10 %, which is the margin a ratio's target is judged by; pairs run back to back see the same
/// neighbours, and the median of three drops one bad round.
/// </summary>
public static class PairedRounds
{
    public const int Rounds = 3;

    public sealed record Result(double Ours, double? Theirs, double? Ratio);

    /// <param name="ours">One measurement of our path (Gbit/s).</param>
    /// <param name="peer">The peer; when it cannot run here (<see cref="IPeerPath.Missing"/>), ours is measured alone.</param>
    public static Result Run(Func<double> ours, IPeerPath peer, string workDirectory, CancellationToken cancellationToken)
    {
        var runsPeer = peer.Missing() is null;
        var mine = new List<double>();
        var theirs = new List<double>();
        var ratios = new List<double>();
        for (var r = 0; r < Rounds && !cancellationToken.IsCancellationRequested; r++)
        {
            double t = 0;
            if (runsPeer && r % 2 == 1) t = peer.Measure(workDirectory);
            var x = ours();
            if (runsPeer && r % 2 == 0) t = peer.Measure(workDirectory);
            mine.Add(x);
            if (!runsPeer || t <= 0) continue;
            theirs.Add(t);
            ratios.Add(x / t);
        }
        if (mine.Count == 0) throw new OperationCanceledException(cancellationToken);
        return new Result(Median(mine), theirs.Count > 0 ? Median(theirs) : null, ratios.Count > 0 ? Median(ratios) : null);
    }

    private static double Median(List<double> values)
    {
        values.Sort();
        return values[values.Count / 2];
    }
}
