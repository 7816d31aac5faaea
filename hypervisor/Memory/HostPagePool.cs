namespace XenIo.Hypervisor.Memory;

/// <summary>
/// The host's single page pool: every domain's pages are accounted against one budget, so creating
/// a domain or populating pages fails cleanly (a false, never an exception or an OOM kill) when the
/// host has promised all it has. Lock-free; the counters are the only state.
/// </summary>
public sealed class HostPagePool
{
    private long _used;

    public HostPagePool(long budgetPages)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(budgetPages);
        BudgetPages = budgetPages;
    }

    public long BudgetPages { get; }

    public long UsedPages => Volatile.Read(ref _used);

    public long FreePages => BudgetPages - UsedPages;

    /// <summary>Takes <paramref name="pages"/> from the pool, all or nothing.</summary>
    public bool TryReserve(long pages)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(pages);
        long used = Volatile.Read(ref _used);
        while (true)
        {
            if (pages > BudgetPages - used) return false;
            long seen = Interlocked.CompareExchange(ref _used, used + pages, used);
            if (seen == used) return true;
            used = seen;
        }
    }

    /// <summary>Returns pages taken with <see cref="TryReserve"/>.</summary>
    public void Release(long pages)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(pages);
        long after = Interlocked.Add(ref _used, -pages);
        if (after < 0) throw new InvalidOperationException("page pool released more pages than it reserved");
    }
}
