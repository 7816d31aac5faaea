using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Memory;

namespace XenIo.Hypervisor.Grants;

/// <summary>
/// hyperd's record of which grants each dom0 client holds mapped, so that when a client's hypercall
/// connection closes (a backend crashed or was killed) its pins are released: GTF_writing cleared when
/// no writable mapping of the entry remains, GTF_reading when no mapping remains at all. A crashed
/// backend pins nothing. Thread-safe; all operations are under one lock (they are control-path).
/// </summary>
public sealed class MappedGrantLedger
{
    /// <summary>Per client, a bound on recorded mappings: a runaway client is cut off, not allowed to grow hyperd.</summary>
    public const int MaxMappingsPerClient = 1 << 20;

    private readonly object _gate = new();
    private readonly Dictionary<long, Dictionary<Key, Count>> _byClient = [];
    private readonly Dictionary<Key, Count> _total = [];

    private readonly record struct Key(ushort Domid, uint Ref);

    private struct Count
    {
        public int Readers;
        public int Writers;
        public readonly int All => Readers + Writers;
    }

    /// <summary>Records a mapping; false when the client is over its bound.</summary>
    public bool Record(long client, ushort domid, uint gref, bool readOnly)
    {
        lock (_gate)
        {
            if (!_byClient.TryGetValue(client, out var mine)) _byClient[client] = mine = [];
            var key = new Key(domid, gref);
            mine.TryGetValue(key, out var c);
            if (c.All >= MaxMappingsPerClient || mine.Count >= MaxMappingsPerClient) return false;
            Bump(ref c, readOnly, +1);
            mine[key] = c;
            _total.TryGetValue(key, out var t);
            Bump(ref t, readOnly, +1);
            _total[key] = t;
            return true;
        }
    }

    /// <summary>Forgets one mapping the client unmapped itself; false if it never recorded it.</summary>
    public bool Forget(long client, ushort domid, uint gref, bool readOnly)
    {
        lock (_gate)
        {
            var key = new Key(domid, gref);
            if (!_byClient.TryGetValue(client, out var mine) || !mine.TryGetValue(key, out var c)) return false;
            if ((readOnly ? c.Readers : c.Writers) == 0) return false;
            Bump(ref c, readOnly, -1);
            if (c.All == 0) mine.Remove(key); else mine[key] = c;
            var t = _total[key];
            Bump(ref t, readOnly, -1);
            if (t.All == 0) _total.Remove(key); else _total[key] = t;
            return true;
        }
    }

    public int MappedBy(long client)
    {
        lock (_gate) return _byClient.TryGetValue(client, out var mine) ? mine.Values.Sum(c => c.All) : 0;
    }

    /// <summary>
    /// Releases everything <paramref name="client"/> held: for each entry whose last (writable) mapping
    /// this was, clears the in-use flags in the guest's grant table (<paramref name="memoryOf"/> gives
    /// hyperd's mapping of a domain and its grant frame count, or null if the domain is gone).
    /// Returns the number of mappings released.
    /// </summary>
    public unsafe int ReleaseClient(long client, Func<ushort, (DomainMemory Memory, uint GrantFrames)?> memoryOf)
    {
        lock (_gate)
        {
            if (!_byClient.Remove(client, out var mine)) return 0;
            int released = 0;
            foreach (var (key, c) in mine)
            {
                released += c.All;
                var t = _total[key];
                t.Readers -= c.Readers;
                t.Writers -= c.Writers;
                if (t.All == 0) _total.Remove(key); else _total[key] = t;

                var clear = GrantFlags.Invalid;
                if (t.Writers == 0) clear |= GrantFlags.Writing;
                if (t.All == 0) clear |= GrantFlags.Reading;
                if (memoryOf(key.Domid) is not { } domain || key.Ref >= GrantEntries.EntriesIn(domain.GrantFrames)) continue;
                GrantEntries.ClearFlags(GrantEntries.Combo(domain.Memory, key.Ref), clear);
            }
            return released;
        }
    }

    private static void Bump(ref Count c, bool readOnly, int delta)
    {
        if (readOnly) c.Readers += delta; else c.Writers += delta;
    }
}
