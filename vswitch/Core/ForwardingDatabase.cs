using System.Runtime.InteropServices;

namespace XenIo.VSwitch.Core;

/// <summary>One learned or static MAC entry, as <c>xenio switch fdb</c> shows it.</summary>
public readonly record struct FdbEntry(ulong Mac, int Vlan, int Port, bool Static, TimeSpan Age);

/// <summary>
/// The MAC learning table of one bridge, keyed by (VLAN, MAC) so the same MAC on two VLANs is two
/// entries. Bounded (Open vSwitch's default 8192) with its storage sized once, so a guest sending from
/// a million random MACs cannot grow memory; when full, expired entries are swept (at most once a
/// second) and otherwise new MACs are not learned and their frames flood. A MAC that moves between
/// ports again within <see cref="MinPersistence"/> is not moved (VDE's 3 s), which damps MAC flapping
/// from loops or spoofing. Not thread-safe: the bridge calls it under its lock.
/// </summary>
public sealed class ForwardingDatabase
{
    private struct Slot
    {
        public int Port;
        public bool Static;
        public long LastSeen;
        public long LearnedAt;
    }

    private readonly Dictionary<ulong, Slot> _table;
    private readonly TimeProvider _time;
    private long _agingTicks;
    private long _persistenceTicks;
    private long _lastSweep;
    private long _learned;
    private long _moves;
    private long _flapsDamped;
    private long _notLearnedFull;

    public ForwardingDatabase(int limit = 8192, TimeSpan? aging = null, TimeSpan? minPersistence = null, TimeProvider? time = null)
    {
        if (limit <= 0) throw new ArgumentOutOfRangeException(nameof(limit));
        Limit = limit;
        _time = time ?? TimeProvider.System;
        _table = new Dictionary<ulong, Slot>(limit);
        Aging = aging ?? TimeSpan.FromSeconds(300);
        MinPersistence = minPersistence ?? TimeSpan.FromSeconds(3);
        _lastSweep = _time.GetTimestamp();
    }

    public int Limit { get; }
    public int Count => _table.Count;
    public long Learned => _learned;
    public long Moves => _moves;
    public long FlapsDamped => _flapsDamped;
    public long NotLearnedFull => _notLearnedFull;

    public TimeSpan Aging
    {
        get => TimeSpan.FromSeconds(_agingTicks / (double)_time.TimestampFrequency);
        set => _agingTicks = (long)(value.TotalSeconds * _time.TimestampFrequency);
    }

    public TimeSpan MinPersistence
    {
        get => TimeSpan.FromSeconds(_persistenceTicks / (double)_time.TimestampFrequency);
        set => _persistenceTicks = (long)(value.TotalSeconds * _time.TimestampFrequency);
    }

    public static ulong Key(ulong mac, int vlan) => (ulong)vlan << 48 | (mac & 0xFFFF_FFFF_FFFF);

    /// <summary>Records that <paramref name="mac"/> on <paramref name="vlan"/> was seen on <paramref name="port"/>.</summary>
    public void Learn(ulong mac, int vlan, int port) => Learn(mac, vlan, port, _time.GetTimestamp());

    internal void Learn(ulong mac, int vlan, int port, long now)
    {
        var key = Key(mac, vlan);
        ref var slot = ref CollectionsMarshal.GetValueRefOrNullRef(_table, key);
        if (!System.Runtime.CompilerServices.Unsafe.IsNullRef(ref slot))
        {
            if (slot.Static) return;
            if (slot.Port != port)
            {
                var expired = now - slot.LastSeen > _agingTicks;
                if (!expired && now - slot.LearnedAt < _persistenceTicks)
                {
                    _flapsDamped++;
                    return;
                }
                slot.Port = port;
                slot.LearnedAt = now;
                _moves++;
            }
            slot.LastSeen = now;
            return;
        }
        if (_table.Count >= Limit)
        {
            if (now - _lastSweep >= _time.TimestampFrequency) Sweep(now);
            if (_table.Count >= Limit)
            {
                _notLearnedFull++;
                return;
            }
        }
        _table[key] = new Slot { Port = port, LastSeen = now, LearnedAt = now };
        _learned++;
    }

    /// <summary>The port for (mac, vlan), or -1 when unknown or aged out.</summary>
    public int Lookup(ulong mac, int vlan) => Lookup(mac, vlan, _time.GetTimestamp());

    internal int Lookup(ulong mac, int vlan, long now)
    {
        var key = Key(mac, vlan);
        ref var slot = ref CollectionsMarshal.GetValueRefOrNullRef(_table, key);
        if (System.Runtime.CompilerServices.Unsafe.IsNullRef(ref slot)) return -1;
        if (!slot.Static && now - slot.LastSeen > _agingTicks)
        {
            _table.Remove(key);
            return -1;
        }
        return slot.Port;
    }

    /// <summary>Adds or replaces a static entry: never aged, never moved by learning.</summary>
    public bool AddStatic(ulong mac, int vlan, int port)
    {
        var key = Key(mac, vlan);
        if (!_table.ContainsKey(key) && _table.Count >= Limit) return false;
        _table[key] = new Slot { Port = port, Static = true, LastSeen = _time.GetTimestamp(), LearnedAt = _time.GetTimestamp() };
        return true;
    }

    public bool Remove(ulong mac, int vlan) => _table.Remove(Key(mac, vlan));

    /// <summary>Removes learned entries (and static ones when asked), of one port or all (<paramref name="port"/> -1).</summary>
    public int Flush(int port = -1, bool includeStatic = false)
    {
        var removed = 0;
        foreach (var (key, slot) in _table)
        {
            if ((port < 0 || slot.Port == port) && (includeStatic || !slot.Static))
            {
                _table.Remove(key);
                removed++;
            }
        }
        return removed;
    }

    /// <summary>Drops every aged-out entry; the bridge calls it from housekeeping.</summary>
    public int Sweep() => Sweep(_time.GetTimestamp());

    private int Sweep(long now)
    {
        _lastSweep = now;
        var removed = 0;
        foreach (var (key, slot) in _table)
        {
            if (!slot.Static && now - slot.LastSeen > _agingTicks)
            {
                _table.Remove(key);
                removed++;
            }
        }
        return removed;
    }

    public List<FdbEntry> Snapshot()
    {
        var now = _time.GetTimestamp();
        var list = new List<FdbEntry>(_table.Count);
        foreach (var (key, slot) in _table)
        {
            var age = TimeSpan.FromSeconds((now - slot.LastSeen) / (double)_time.TimestampFrequency);
            list.Add(new FdbEntry(key & 0xFFFF_FFFF_FFFF, (int)(key >> 48), slot.Port, slot.Static, age));
        }
        return list;
    }
}
