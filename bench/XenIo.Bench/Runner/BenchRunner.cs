using System.Diagnostics;
using System.Reflection;

namespace XenIo.Bench.Runner;

/// <summary>
/// Finds every <see cref="ISystemBenchmark"/> by reflection and runs each in turn, each in a process of
/// its own (<see cref="IsolatedRun"/>); a benchmark that throws or overruns its time is reported as not
/// measured and the run goes on. Then the micro benchmarks, then the results files.
/// </summary>
internal static class BenchRunner
{
    /// <summary>One system benchmark may take this long; `make bench` as a whole must stay under 20 minutes.</summary>
    private static readonly TimeSpan PerBenchmarkLimit = TimeSpan.FromMinutes(6);

    public static async Task<int> RunAsync(BenchOptions options)
    {
        var repoRoot = FindRepoRoot();
        var outDir = Path.GetFullPath(options.OutDirectory, repoRoot);
        var workDir = Path.Combine(outDir, "work");
        // A child shares its parent's work directory.
        if (options.Isolated is { } name) return await IsolatedRun.RunChildAsync(name, options.FiguresFile!, repoRoot, workDir, RunOneAsync);
        if (Directory.Exists(workDir)) Directory.Delete(workDir, recursive: true);
        Directory.CreateDirectory(workDir);

        var started = DateTimeOffset.UtcNow;
        var clock = Stopwatch.StartNew();
        var context = new BenchContext(workDir, repoRoot);

        if (options.System)
        {
            foreach (var benchmark in Discover().Where(b => options.Selects(b.Name)))
                await IsolatedRun.RunAsync(benchmark.Name, context, PerBenchmarkLimit + TimeSpan.FromMinutes(1));
        }
        if (options.Micro)
        {
            try
            {
                MicroBenchmarks.Run(options, context, Path.Combine(workDir, "micro"));
            }
            catch (Exception e)
            {
                context.Unavailable("micro", $"BenchmarkDotNet failed: {e.GetType().Name}: {e.Message}");
            }
        }

        var figures = context.Figures;
        ResultsWriter.Write(outDir, figures, MachineInfo.Collect(repoRoot), started, clock.Elapsed, options);
        Console.WriteLine($"wrote {Path.Combine(outDir, "latest.json")} and latest.md: {figures.Count} figures in {clock.Elapsed.TotalSeconds:F0} s");
        return 0;
    }

    internal static async Task RunOneAsync(ISystemBenchmark benchmark, BenchContext context)
    {
        Console.WriteLine($"== {benchmark.Name}");
        var sw = Stopwatch.StartNew();
        using var cts = new CancellationTokenSource(PerBenchmarkLimit);
        try
        {
            // On the thread pool, so a benchmark that blocks still meets the time limit below.
            var run = Task.Run(() => benchmark.RunAsync(context, cts.Token));
            var finished = await Task.WhenAny(run, Task.Delay(PerBenchmarkLimit + TimeSpan.FromSeconds(30)));
            if (finished != run)
                context.Unavailable(benchmark.Name, $"did not finish within {PerBenchmarkLimit.TotalMinutes:F0} min");
            else
                await run;
        }
        catch (Exception e)
        {
            context.Unavailable(benchmark.Name, $"failed: {e.GetType().Name}: {FirstLine(e.Message)}");
        }
        Console.WriteLine($"   ({sw.Elapsed.TotalSeconds:F1} s)");
    }

    /// <summary>Every concrete <see cref="ISystemBenchmark"/> in this assembly with a parameterless constructor.</summary>
    internal static IReadOnlyList<ISystemBenchmark> Discover()
    {
        var found = new List<ISystemBenchmark>();
        foreach (var type in typeof(BenchRunner).Assembly.GetTypes()
                     .Where(t => typeof(ISystemBenchmark).IsAssignableFrom(t) && t is { IsAbstract: false, IsInterface: false })
                     .OrderBy(t => t.FullName, StringComparer.Ordinal))
        {
            if (type.GetConstructor(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance, Type.EmptyTypes) is not { } ctor)
            {
                Console.Error.WriteLine($"skipping {type.FullName}: no parameterless constructor");
                continue;
            }
            found.Add((ISystemBenchmark)ctor.Invoke(null));
        }
        return found;
    }

    /// <summary>The directory holding XenIo.sln, searched upwards from the working directory, then from the binary.</summary>
    private static string FindRepoRoot()
    {
        foreach (var start in new[] { Environment.CurrentDirectory, AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "XenIo.sln"))) return dir.FullName;
        }
        return Environment.CurrentDirectory;
    }

    private static string FirstLine(string s) => s.Split('\n')[0].Trim();
}
