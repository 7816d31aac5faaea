namespace XenIo.Bench.Peers;

/// <summary>
/// Ours against one peer in adjacent pairs, alternating which of the two goes first, and the medians
/// of each side and of the pairs' ratios. One 5-second iperf3 stream on a shared 2-core machine swings
/// by ±10 %, which is the margin a ratio's target is judged by; pairs run back to back see the same
/// neighbours, and the median of five drops two bad rounds (with three, one unlucky pair in a run
/// decided a target that sits within the noise). The lowest and highest pair ratios are reported
/// beside the median, so a reader sees the spread the median was taken from. Disk jobs against fio on
/// the image file (<see cref="RunAsync"/>) are taken the same way.
/// </summary>
public static class PairedRounds
{
    public const int Rounds = 5;

    /// <param name="Pairs">How many pairs gave a ratio.</param>
    /// <param name="RatioRange">The lowest and highest of the pairs' ratios, for the report.</param>
    public sealed record Result(double Ours, double? Theirs, double? Ratio, int Pairs, (double Low, double High)? RatioRange)
    {
        /// <summary>"median of N adjacent pairs (low–high)": how a ratio from these rounds is described.</summary>
        public string RatioDescription => RatioRange is { } r
            ? $"median of {Pairs} adjacent pairs (pairs {r.Low:0.###}–{r.High:0.###})"
            : $"median of {Pairs} adjacent pairs";
    }

    /// <param name="ours">One measurement of our path (Gbit/s).</param>
    /// <param name="peer">The peer; when it cannot run here (<see cref="IPeerPath.Missing"/>), ours is measured alone.</param>
    public static Result Run(Func<double> ours, IPeerPath peer, string workDirectory, CancellationToken cancellationToken)
    {
        Func<Task<double?>>? theirs = peer.Missing() is null ? () => Task.FromResult<double?>(peer.Measure(workDirectory)) : null;
        // Both measurements are synchronous: the tasks are complete when returned.
        return RunAsync(() => Task.FromResult(ours()), theirs, Rounds, cancellationToken).GetAwaiter().GetResult();
    }

    /// <summary>
    /// <paramref name="rounds"/> adjacent pairs of <paramref name="ours"/> and <paramref name="baseline"/>
    /// (alternating which goes first); a baseline that returns null or a figure ≤ 0 failed, and that
    /// pair gives no ratio. Without a baseline, ours is measured alone.
    /// </summary>
    public static async Task<Result> RunAsync(Func<Task<double>> ours, Func<Task<double?>>? baseline, int rounds, CancellationToken cancellationToken)
    {
        var mine = new List<double>();
        var theirs = new List<double>();
        var ratios = new List<double>();
        for (var r = 0; r < rounds && !cancellationToken.IsCancellationRequested; r++)
        {
            double? t = null;
            if (baseline is not null && r % 2 == 1) t = await baseline();
            var x = await ours();
            if (baseline is not null && r % 2 == 0) t = await baseline();
            mine.Add(x);
            if (t is not { } value || value <= 0) continue;
            theirs.Add(value);
            ratios.Add(x / value);
        }
        if (mine.Count == 0) throw new OperationCanceledException(cancellationToken);
        return new Result(Median(mine), theirs.Count > 0 ? Median(theirs) : null, ratios.Count > 0 ? Median(ratios) : null,
            ratios.Count, ratios.Count > 0 ? (ratios.Min(), ratios.Max()) : null);
    }

    private static double Median(List<double> values)
    {
        values.Sort();
        return values[values.Count / 2];
    }
}
