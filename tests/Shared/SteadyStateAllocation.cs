namespace XenIo.Tests;

/// <summary>
/// What a hot path allocates on the calling thread once warm. Tiered compilation promotes a method some
/// time after its 30th call (call counting starts after a 100 ms delay, restarted whenever other methods
/// are jitted), and the promotion can allocate on the calling thread; on a loaded machine it lands in
/// whichever window of calls happens to be running. So the path is measured over several windows and the
/// least is returned: an allocation the path itself makes shows in every window, a one-off does not.
/// </summary>
internal static class SteadyStateAllocation
{
    public static long BytesOver(int calls, Action action, int windows = 5)
    {
        for (var i = 0; i < 100; i++) action();
        var least = long.MaxValue;
        for (var w = 0; w < windows && least > 0; w++)
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            for (var i = 0; i < calls; i++) action();
            least = Math.Min(least, GC.GetAllocatedBytesForCurrentThread() - before);
        }
        return least;
    }
}
