namespace XenIo.Bench;

/// <summary>
/// A side-by-side system benchmark: measures a XenIo path and its baseline in the same run and
/// reports flat keys (e.g. <c>ring.xproc.req_per_s</c>). The runner finds every implementation by
/// reflection, so each area adds its own file under bench/XenIo.Bench/&lt;Area&gt;/ and edits no list.
/// </summary>
public interface ISystemBenchmark
{
    /// <summary>Short name used by <c>make bench ONLY=name</c> and in progress lines.</summary>
    string Name { get; }

    Task RunAsync(BenchContext context, CancellationToken cancellationToken);
}

/// <summary>What a benchmark reports into; the runner turns it into latest.json and latest.md.</summary>
public sealed class BenchContext
{
    private readonly List<BenchFigure> _figures = [];
    private readonly object _gate = new();

    public BenchContext(string workDirectory, string repoRoot)
    {
        WorkDirectory = workDirectory;
        RepoRoot = repoRoot;
    }

    /// <summary>A scratch directory for this run (C baselines, images, sockets).</summary>
    public string WorkDirectory { get; }

    /// <summary>The repository root (for ../shared and the built bin/xenio).</summary>
    public string RepoRoot { get; }

    public IReadOnlyList<BenchFigure> Figures { get { lock (_gate) return _figures.ToArray(); } }

    /// <summary>Reports one figure. <paramref name="target"/> is the goal for a ratio, if any.</summary>
    public void Report(string key, double value, string unit, string? note = null, double? target = null)
    {
        lock (_gate) _figures.Add(new BenchFigure(key, value, unit, note, target));
        Console.WriteLine($"  {key} = {value:G6} {unit}{(target is { } t ? $" (target ≥ {t})" : "")}");
    }

    /// <summary>Reports a figure whose goal is a ceiling (e.g. notifications per request): met when value ≤ <paramref name="limit"/>.</summary>
    public void ReportAtMost(string key, double value, string unit, double limit, string? note = null)
    {
        lock (_gate) _figures.Add(new BenchFigure(key, value, unit, note, limit, TargetIsMaximum: true));
        Console.WriteLine($"  {key} = {value:G6} {unit} (target ≤ {limit})");
    }

    /// <summary>Takes the figures a benchmark reported in a child process (<see cref="Runner.IsolatedRun"/>).</summary>
    internal void Add(IEnumerable<BenchFigure> figures)
    {
        lock (_gate) _figures.AddRange(figures);
    }

    /// <summary>Reports that a figure could not be measured in this run, and why (a missing peer, no root).</summary>
    public void Unavailable(string key, string why)
    {
        lock (_gate) _figures.Add(new BenchFigure(key, double.NaN, "", why, null));
        Console.WriteLine($"  {key}: not measured ({why})");
    }
}

/// <summary>One measured figure. <see cref="Target"/> is a floor unless <see cref="TargetIsMaximum"/>.</summary>
public sealed record BenchFigure(string Key, double Value, string Unit, string? Note, double? Target, bool TargetIsMaximum = false)
{
    /// <summary>Whether the figure meets its target; null when it has none or was not measured.</summary>
    public bool? Met => Target is not { } t || double.IsNaN(Value) ? null : TargetIsMaximum ? Value <= t : Value >= t;
}
