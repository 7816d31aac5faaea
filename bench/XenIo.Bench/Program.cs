using XenIo.Bench.Runner;

namespace XenIo.Bench;

/// <summary>
/// <c>make bench</c>: runs every <see cref="ISystemBenchmark"/> and the BenchmarkDotNet micro
/// benchmarks, then writes DIR/latest.json and DIR/latest.md.
/// <code>XenIo.Bench [--only SUBSTR] [--out DIR] [--no-micro | --micro-only]</code>
/// </summary>
internal static class Program
{
    private static async Task<int> Main(string[] args)
    {
        if (!BenchOptions.TryParse(args, out var options, out var error))
        {
            Console.Error.WriteLine(error);
            Console.Error.WriteLine("usage: XenIo.Bench [--only SUBSTR] [--out DIR] [--no-micro | --micro-only]");
            return 2;
        }
        return await BenchRunner.RunAsync(options);
    }
}
