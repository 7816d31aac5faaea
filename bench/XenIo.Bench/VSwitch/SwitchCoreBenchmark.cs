using System.Diagnostics;

namespace XenIo.Bench.VSwitch;

/// <summary>
/// vswitch.fwd_mpps_64B and vswitch.fwd.ratio_vs_copy: the switch core against a copy-only loop over the
/// same 64-byte mix, on one core, in the same run (best of several rounds each, interleaved, so a noisy
/// neighbour hurts both sides alike).
/// </summary>
public sealed class SwitchCoreBenchmark : ISystemBenchmark
{
    public string Name => "vswitch";

    public Task RunAsync(BenchContext context, CancellationToken cancellationToken)
    {
        var workload = new SwitchWorkload();
        var (forward, copy) = Measure(workload, rounds: 5, roundTime: TimeSpan.FromMilliseconds(400), cancellationToken);
        context.Report("vswitch.fwd_mpps_64B", forward / 1e6, "Mpps", $"{SwitchWorkload.Macs} MACs, {SwitchWorkload.Ports} ports, 1% broadcast, one thread");
        context.Report("vswitch.copy_mpps_64B", copy / 1e6, "Mpps", "copy-only loop over the same frames and destinations");
        context.Report("vswitch.fwd.ratio_vs_copy", forward / copy, "ratio", "switch core / copy-only", target: 0.4);
        return Task.CompletedTask;
    }

    /// <summary>Frames per second for forwarding and for the copy-only baseline.</summary>
    internal static (double Forward, double Copy) Measure(SwitchWorkload workload, int rounds, TimeSpan roundTime, CancellationToken cancellationToken)
    {
        workload.ForwardAll();
        workload.CopyAll();
        double bestForward = 0, bestCopy = 0;
        for (var r = 0; r < rounds && !cancellationToken.IsCancellationRequested; r++)
        {
            bestForward = Math.Max(bestForward, Rate(workload.ForwardAll, workload.FrameCount, roundTime));
            bestCopy = Math.Max(bestCopy, Rate(workload.CopyAll, workload.FrameCount, roundTime));
        }
        return (bestForward, bestCopy);
    }

    private static double Rate(Action pass, int framesPerPass, TimeSpan duration)
    {
        var sw = Stopwatch.StartNew();
        long frames = 0;
        while (sw.Elapsed < duration)
        {
            pass();
            frames += framesPerPass;
        }
        return frames / sw.Elapsed.TotalSeconds;
    }
}
