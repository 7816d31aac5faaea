using System.Diagnostics;
using Xunit;

namespace XenIo.VSwitch.Tests.Ports;

/// <summary>
/// Tests that measure the whole process (its open descriptors, the bytes every thread allocates). They
/// run alone, after the parallel tests, so other tests' sockets and allocations stay out of the counts.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ProcessWide
{
    public const string Name = "process-wide measurements";

    /// <summary>Descriptors open in this process now.</summary>
    public static int Descriptors() => Directory.GetFiles("/proc/self/fd").Length;

    /// <summary>
    /// How many descriptors <paramref name="times"/> runs of <paramref name="action"/> leave open. Run once
    /// first, so whatever the runtime opens lazily on first use (the socket engine's epoll) is not counted.
    /// </summary>
    public static int DescriptorsLeftBy(int times, Action action)
    {
        action();
        var before = Descriptors();
        for (var i = 0; i < times; i++) action();
        return Descriptors() - before;
    }

    /// <summary>
    /// Bytes every thread of the process allocates over <paramref name="calls"/> runs of
    /// <paramref name="action"/>, for paths that hand frames to another thread (where
    /// SteadyStateAllocation, which counts only the calling thread, sees nothing). As there, the least
    /// of several windows after a warm-up, so a one-off (tiering, a pool thread starting) is not counted.
    /// </summary>
    public static long BytesAllocatedOver(int calls, Action action, int windows = 4)
    {
        for (var i = 0; i < 1000; i++) action();
        var least = long.MaxValue;
        for (var w = 0; w < windows; w++)
        {
            var before = GC.GetTotalAllocatedBytes(precise: true);
            for (var i = 0; i < calls; i++) action();
            least = Math.Min(least, GC.GetTotalAllocatedBytes(precise: true) - before);
        }
        return least;
    }

    /// <summary>Spins for <paramref name="time"/>, allocating nothing (Thread.Sleep's shortest is a millisecond).</summary>
    public static void Pause(TimeSpan time)
    {
        var until = Stopwatch.GetTimestamp() + (long)(time.TotalSeconds * Stopwatch.Frequency);
        while (Stopwatch.GetTimestamp() < until) Thread.SpinWait(10);
    }

    /// <summary>Spins (allocating nothing) until <paramref name="done"/> holds; throws after 10 s.</summary>
    public static void SpinUntil(Func<bool> done)
    {
        var deadline = Stopwatch.GetTimestamp() + 10 * Stopwatch.Frequency;
        var spin = new SpinWait();
        while (!done())
        {
            if (Stopwatch.GetTimestamp() > deadline) throw new TimeoutException("condition not met");
            spin.SpinOnce();
        }
    }
}
