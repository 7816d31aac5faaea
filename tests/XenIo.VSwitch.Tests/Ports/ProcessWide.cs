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
}
