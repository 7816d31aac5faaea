using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Grants;

namespace XenIo.Blkback.Rings;

/// <summary>
/// Grants a frontend with <c>feature-persistent</c> reuses for every request: mapped once (writable, as
/// blkfront grants them) and kept until the ring goes, as Linux's blkback keeps its persistent_gnts tree.
/// Past <see cref="Capacity"/> a grant is mapped for the one request and unmapped after it. Thread-safe:
/// the queue's I/O workers look grants up concurrently.
/// </summary>
public sealed unsafe class PersistentGrants(ForeignDomain domain, int capacity) : IDisposable
{
    // Lookups are lock-free (every request of every worker does them); inserts and disposal take the gate.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<uint, GrantMapping> _maps = new(Environment.ProcessorCount, capacity);
    private readonly object _gate = new();
    private volatile bool _disposed;

    public int Capacity { get; } = capacity;

    public int Count => _maps.Count;

    /// <summary>The page of <paramref name="gref"/>; <paramref name="transient"/> is set when the caller must <see cref="Release"/> it after the I/O.</summary>
    public GrantStatus Get(uint gref, out GrantMapping mapping, out bool transient)
    {
        transient = false;
        if (_disposed) { mapping = default; return GrantStatus.GeneralError; }
        if (_maps.TryGetValue(gref, out mapping)) return GrantStatus.Okay;
        var status = domain.Map(gref, readOnly: false, out mapping);
        if (status != GrantStatus.Okay) return status;
        lock (_gate)
        {
            if (!_disposed && _maps.Count < Capacity)
            {
                // Another worker may have mapped the same ref meanwhile: keep one, drop ours.
                if (_maps.TryGetValue(gref, out var existing))
                {
                    domain.Unmap(mapping);
                    mapping = existing;
                    return GrantStatus.Okay;
                }
                _maps[gref] = mapping;
                return GrantStatus.Okay;
            }
        }
        transient = true;
        return GrantStatus.Okay;
    }

    public void Release(in GrantMapping mapping) => domain.Unmap(mapping);

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            foreach (var m in _maps.Values) domain.Unmap(m);
            _maps.Clear();
        }
    }
}
