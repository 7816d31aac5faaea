using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace XenIo.Bench.Runner;

/// <summary>
/// Runs one system benchmark in a child process of this program and takes its figures back. Each
/// benchmark then starts from a fresh runtime: the JIT's profile-guided code for a shared path (the
/// switch core, the grant copy) is shaped by that benchmark's own traffic rather than by whichever
/// benchmark ran before it in the same process, and no thread, GC heap or mapping left behind by one
/// benchmark slows the next. The child prints its progress lines straight to our console.
/// </summary>
internal static class IsolatedRun
{
    private static readonly JsonSerializerOptions Json = new() { NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals };

    /// <summary>Runs the benchmark named <paramref name="name"/> in a child and adds what it reported to <paramref name="context"/>.</summary>
    public static async Task RunAsync(string name, BenchContext context, TimeSpan limit)
    {
        var figures = Path.Combine(context.WorkDirectory, $"figures-{name}.json");
        File.Delete(figures);
        var start = ChildStart(["--isolated", name, "--figures", figures]);
        using var child = Process.Start(start) ?? throw new InvalidOperationException("cannot start the benchmark child");
        using var timeout = new CancellationTokenSource(limit);
        try
        {
            await child.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            child.Kill(entireProcessTree: true);
            await child.WaitForExitAsync();
            context.Unavailable(name, $"did not finish within {limit.TotalMinutes:F0} min");
            return;
        }
        if (!File.Exists(figures))
        {
            context.Unavailable(name, $"the benchmark's process ended with status {child.ExitCode} before it reported");
            return;
        }
        context.Add(JsonSerializer.Deserialize<BenchFigure[]>(File.ReadAllText(figures), Json) ?? []);
    }

    /// <summary>The child's side: runs the one benchmark and writes its figures, even when it failed (then they say why).</summary>
    public static async Task<int> RunChildAsync(string name, string figuresFile, string repoRoot, string workDir,
        Func<ISystemBenchmark, BenchContext, Task> runOne)
    {
        var context = new BenchContext(workDir, repoRoot);
        var benchmark = BenchRunner.Discover().FirstOrDefault(b => b.Name == name);
        if (benchmark is null) context.Unavailable(name, "no such benchmark");
        else await runOne(benchmark, context);
        File.WriteAllText(figuresFile, JsonSerializer.Serialize(context.Figures, Json));
        return 0;
    }

    /// <summary>This program again, with <paramref name="args"/>: through the dotnet host when that is how we run.</summary>
    private static ProcessStartInfo ChildStart(IEnumerable<string> args)
    {
        var host = Environment.ProcessPath ?? throw new InvalidOperationException("cannot tell which program this is");
        var start = new ProcessStartInfo(host) { UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(host) == "dotnet") start.ArgumentList.Add(typeof(IsolatedRun).Assembly.Location);
        foreach (var a in args) start.ArgumentList.Add(a);
        return start;
    }
}
