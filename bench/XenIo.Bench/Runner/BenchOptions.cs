namespace XenIo.Bench.Runner;

/// <summary>Command line of the runner.</summary>
internal sealed record BenchOptions(string Only, string OutDirectory, bool Micro, bool System)
{
    /// <summary>
    /// Set in a child the runner starts for one system benchmark (<c>--isolated NAME --figures FILE</c>):
    /// run exactly that one here and write its figures to FILE.
    /// </summary>
    public string? Isolated { get; init; }
    public string? FiguresFile { get; init; }

    public static bool TryParse(string[] args, out BenchOptions options, out string? error)
    {
        string only = "", outDir = Path.Combine("bench", "results");
        string? isolated = null, figures = null;
        bool micro = true, system = true;
        options = null!;
        error = null;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--only" when i + 1 < args.Length:
                    only = args[++i];
                    break;
                case "--out" when i + 1 < args.Length:
                    outDir = args[++i];
                    break;
                case "--micro":
                    micro = true;
                    break;
                case "--no-micro":
                    micro = false;
                    break;
                case "--isolated" when i + 1 < args.Length:
                    isolated = args[++i];
                    break;
                case "--figures" when i + 1 < args.Length:
                    figures = args[++i];
                    break;
                case "--micro-only":
                    system = false;
                    break;
                default:
                    error = $"unknown or incomplete option '{args[i]}'";
                    return false;
            }
        }
        if ((isolated is null) != (figures is null))
        {
            error = "--isolated and --figures go together";
            return false;
        }
        options = new BenchOptions(only.Trim(), outDir, micro, system) { Isolated = isolated, FiguresFile = figures };
        return true;
    }

    /// <summary>True when <paramref name="name"/> is selected by <c>--only</c> (case-insensitive substring; empty selects all).</summary>
    public bool Selects(string name) => Only.Length == 0 || name.Contains(Only, StringComparison.OrdinalIgnoreCase);
}
