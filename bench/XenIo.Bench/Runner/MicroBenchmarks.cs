using System.Reflection;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Loggers;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace XenIo.Bench.Runner;

/// <summary>
/// Runs every class in this assembly that has a <c>[Benchmark]</c> method with a short in-process job
/// (no per-benchmark project rebuild, so the whole micro suite costs seconds per method) and the
/// memory diagnoser, and reports <c>micro.Class.Method.ns_per_op</c> and <c>.bytes_per_op</c>.
/// </summary>
internal static class MicroBenchmarks
{
    public static void Run(BenchOptions options, BenchContext context, string artifacts)
    {
        var types = typeof(MicroBenchmarks).Assembly.GetTypes()
            .Where(t => t is { IsClass: true, IsAbstract: false } &&
                        t.GetMethods(BindingFlags.Public | BindingFlags.Instance).Any(m => m.GetCustomAttribute<BenchmarkAttribute>() is not null))
            .Where(t => options.Selects(t.Name) || options.Selects("micro." + t.Name))
            .OrderBy(t => t.FullName, StringComparer.Ordinal)
            .ToArray();
        if (types.Length == 0) return;
        Console.WriteLine($"== micro ({types.Length} classes)");

        var job = Job.ShortRun
            .WithToolchain(InProcessEmitToolchain.Instance)
            .WithWarmupCount(2)
            .WithIterationCount(5)
            .WithLaunchCount(1);
        var config = ManualConfig.CreateEmpty()
            .AddJob(job)
            .AddDiagnoser(MemoryDiagnoser.Default)
            .AddColumnProvider(DefaultColumnProviders.Instance)
            .AddLogger(ConsoleLogger.Default)
            .WithArtifactsPath(artifacts)
            .WithOptions(ConfigOptions.DisableOptimizationsValidator | ConfigOptions.JoinSummary);

        foreach (var summary in BenchmarkRunner.Run(types, config))
        {
            foreach (var report in summary.Reports)
            {
                var bc = report.BenchmarkCase;
                var key = $"micro.{bc.Descriptor.Type.Name}.{bc.Descriptor.WorkloadMethod.Name}";
                if (bc.HasParameters) key += "." + string.Join(".", bc.Parameters.Items.Select(p => $"{p.Name}_{p.Value}"));
                if (!report.Success || report.ResultStatistics is null)
                {
                    context.Unavailable(key + ".ns_per_op", "BenchmarkDotNet run failed");
                    continue;
                }
                context.Report(key + ".ns_per_op", report.ResultStatistics.Mean, "ns/op");
                if (report.GcStats.GetBytesAllocatedPerOperation(bc) is { } bytes)
                    context.Report(key + ".bytes_per_op", bytes, "B/op");
            }
        }
    }
}
