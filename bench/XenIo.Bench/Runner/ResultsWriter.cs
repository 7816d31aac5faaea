using System.Globalization;
using System.Text;
using System.Text.Json;

namespace XenIo.Bench.Runner;

/// <summary>
/// Writes latest.json (one flat object, key → number; a figure not measured is null) and latest.md
/// (the machine, date and commit, then a table of every figure with its target).
/// </summary>
internal static class ResultsWriter
{
    public static void Write(string outDir, IReadOnlyList<BenchFigure> figures, MachineInfo machine, DateTimeOffset started, TimeSpan elapsed, BenchOptions options)
    {
        Directory.CreateDirectory(outDir);
        File.WriteAllText(Path.Combine(outDir, "latest.json"), Json(figures));
        File.WriteAllText(Path.Combine(outDir, "latest.md"), Markdown(figures, machine, started, elapsed, options));
    }

    internal static string Json(IReadOnlyList<BenchFigure> figures)
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            // A key reported twice keeps its last value.
            foreach (var f in figures.GroupBy(f => f.Key).Select(g => g.Last()))
            {
                if (double.IsFinite(f.Value)) json.WriteNumber(f.Key, f.Value);
                else json.WriteNull(f.Key);
            }
            json.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray()) + "\n";
    }

    internal static string Markdown(IReadOnlyList<BenchFigure> figures, MachineInfo machine, DateTimeOffset started, TimeSpan elapsed, BenchOptions options)
    {
        var md = new StringBuilder();
        md.AppendLine("# XenIo benchmarks");
        md.AppendLine();
        md.AppendLine(CultureInfo.InvariantCulture, $"- date: {started:yyyy-MM-dd HH:mm} UTC ({elapsed.TotalSeconds:F0} s)");
        md.AppendLine(CultureInfo.InvariantCulture, $"- machine: {machine.Cpus} CPUs, {machine.CpuModel}, Linux {machine.Kernel}");
        md.AppendLine(CultureInfo.InvariantCulture, $"- commit: {machine.Commit}");
        if (options.Only.Length > 0) md.AppendLine(CultureInfo.InvariantCulture, $"- only: `{options.Only}`");
        md.AppendLine("- ratios are against a baseline measured in the same run (ARCHITECTURE.md, Benchmarks)");
        md.AppendLine();
        md.AppendLine("| key | value | unit | target | met? | note |");
        md.AppendLine("|---|---:|---|---|---|---|");
        foreach (var f in figures)
        {
            string value = double.IsFinite(f.Value) ? Format(f.Value) : "—";
            string target = f.Target is { } t ? (f.TargetIsMaximum ? "≤ " : "≥ ") + Format(t) : "";
            string met = f.Met switch { true => "yes", false => "**no**", null => double.IsNaN(f.Value) ? "not measured" : "" };
            md.AppendLine(CultureInfo.InvariantCulture, $"| `{f.Key}` | {value} | {f.Unit} | {target} | {met} | {Cell(f.Note)} |");
        }
        return md.ToString();
    }

    private static string Format(double v) =>
        Math.Abs(v) >= 1e6 ? v.ToString("N0", CultureInfo.InvariantCulture) : v.ToString("G4", CultureInfo.InvariantCulture);

    private static string Cell(string? s) => (s ?? "").Replace("|", "\\|", StringComparison.Ordinal).Replace('\n', ' ');
}
