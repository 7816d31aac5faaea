using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace XenIo.VSwitch.Core;

/// <summary>One learned or static MAC entry, as <c>xenio switch fdb</c> shows it.</summary>
public readonly record struct FdbEntry(ulong Mac, int Vlan, int Port, bool Static, TimeSpan Age);

/// <summary>
/// The MAC learning table of one bridge, keyed by (VLAN, MAC) so the same MAC on two VLANs is two
/// entries. Bounded (Open vSwitch's default 8192) in an open-addressing table of 16-byte slots (linear
/// probing, backward-shift deletion) that grows with its entries up to twice the limit and no further, so a guest
/// sending from a million random MACs cannot grow memory past that and a lookup touches one cache line
/// of a table no larger than its entries need; when full, expired entries are swept (at most once a
/// second) and otherwise new MACs are not learned and their frames flood. A MAC that moves between
/// ports again within <see cref="MinPersistence"/> is not moved (VDE's 3 s), which damps MAC flapping
/// from loops or spoofing. Not thread-safe: the bridge calls it under its lock.
/// </summary>
public sealed class ForwardingDatabase
{
    private const ulong Occupied = 1UL << 63;

    /// <summary>
    /// One entry in 16 bytes, four to a cache line: what a lookup reads. When the entry was learned on
    /// its port (read only when it moves, and for a static entry's age) is kept apart, in <see cref="_learnedAt"/>.
    /// </summary>
    private struct Slot
    {
        public ulong Key; // Occupied | vlan << 48 | mac; 0 when empty
        public ulong Seen; // the stamp it was last seen at (Forever when static) << PortBits | port
    }

    /// <summary>
    /// Times in the table are stamps: the timestamp since the table was made, shifted down to about ten
    /// microseconds, so one fits in 48 bits beside a 16-bit port and lasts over 70 years of uptime.
    /// Ages are exact to the stamp, far finer than aging needs.
    /// </summary>
    private const int PortBits = 16;
    private const ulong PortMask = (1UL << PortBits) - 1;
    /// <summary>A static entry's stamp: later than any time, so it never ages out or needs a refresh.</summary>
    private const long Forever = (1L << (64 - PortBits)) - 1;
    /// <summary>The largest port number an entry holds.</summary>
    public const int MaxPort = (int)PortMask;

    private static ulong Seen(long stamp, int port) => (ulong)stamp << PortBits | (uint)port;
    private static int PortOf(in Slot slot) => (int)(slot.Seen & PortMask);
    private static long StampOf(in Slot slot) => (long)(slot.Seen >> PortBits);
    private static bool IsStatic(in Slot slot) => StampOf(slot) == Forever;

    /// <summary>Last seen longer than the aging time before <paramref name="stamp"/> (never for a static entry).</summary>
    private bool IsExpired(in Slot slot, long stamp) => StampOf(slot) < stamp - _agingStamps;

    private readonly long _epoch;
    private readonly int _stampShift;

    /// <summary>The stamp of timestamp <paramref name="now"/> (0 for a time before the table was made).</summary>
    private long Stamp(long now) => Math.Min(Math.Max(now - _epoch, 0) >> _stampShift, Forever - 1);

    private Slot[] _slots;
    /// <summary>Per slot, the timestamp its entry was learned on its port or made static at (flap damping, a static entry's age); moves with its entry.</summary>
    private long[] _learnedAt;
    private int _mask;
    /// <summary><see cref="_mask"/> in bytes: the batch path probes by byte offset.</summary>
    private nuint _byteMask;
    private static nuint SlotSize => (nuint)Unsafe.SizeOf<Slot>();
    private int _shift;
    private readonly int _maxCapacity;
    private readonly TimeProvider _time;
    private int _count;
    private long _agingTicks;
    private long _agingStamps;
    private long _refreshStamps;
    private long _persistenceTicks;
    private long _lastSweep;
    private long _learned;
    private long _moves;
    private long _flapsDamped;
    private long _notLearnedFull;

    public ForwardingDatabase(int limit = 8192, TimeSpan? aging = null, TimeSpan? minPersistence = null, TimeProvider? time = null)
    {
        if (limit <= 0 || limit > 1 << 24) throw new ArgumentOutOfRangeException(nameof(limit));
        Limit = limit;
        _time = time ?? TimeProvider.System;
        _epoch = _time.GetTimestamp();
        // Stamps of about ten microseconds: 8.2 us at Linux's nanosecond timestamps.
        _stampShift = Math.Max(0, System.Numerics.BitOperations.Log2((ulong)(_time.TimestampFrequency / 100_000)));
        _maxCapacity = (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)limit * 2);
        Resize(Math.Min(MinCapacity, _maxCapacity));
        Aging = aging ?? TimeSpan.FromSeconds(300);
        MinPersistence = minPersistence ?? TimeSpan.FromSeconds(3);
        _lastSweep = _time.GetTimestamp();
    }

    public int Limit { get; }
    public int Count => _count;

    /// <summary>Slots the table has now: a power of two, at most twice the limit rounded up to a power of two.</summary>
    internal int Capacity => _slots.Length;
    public long Learned => _learned;
    public long Moves => _moves;
    public long FlapsDamped => _flapsDamped;
    public long NotLearnedFull => _notLearnedFull;

    /// <summary>Times an insert made a run longer than <see cref="MaxRun"/> and the table was rehashed with a new random multiplier.</summary>
    public long Rehashes => _rehashes;

    public TimeSpan Aging
    {
        get => TimeSpan.FromSeconds(_agingTicks / (double)_time.TimestampFrequency);
        set
        {
            _agingTicks = (long)(value.TotalSeconds * _time.TimestampFrequency);
            _agingStamps = _agingTicks >> _stampShift;
            // An entry seen again within this much of its last refresh keeps its timestamp: the learn
            // of a known source then only reads its slot. Ages are exact to within 1/300 of the aging
            // time (1 s at the default 300 s), far inside what aging promises.
            _refreshStamps = Math.Min(_agingTicks / 300, _time.TimestampFrequency) >> _stampShift;
        }
    }

    public TimeSpan MinPersistence
    {
        get => TimeSpan.FromSeconds(_persistenceTicks / (double)_time.TimestampFrequency);
        set => _persistenceTicks = (long)(value.TotalSeconds * _time.TimestampFrequency);
    }

    public static ulong Key(ulong mac, int vlan) => Occupied | (ulong)(vlan & 0xFFF) << 48 | (mac & 0xFFFF_FFFF_FFFF);

    /// <summary>
    /// Fibonacci hashing's multiplier (2^64 over the golden ratio): it spreads keys that differ in their
    /// low bits, as the MACs a toolstack numbers its guests with do, over the table without a collision.
    /// </summary>
    private const ulong FibonacciMultiplier = 0x9E3779B97F4A7C15UL;

    /// <summary>
    /// The longest run of occupied slots the table lets stand. Keys from guests land in runs of a few
    /// slots, even in a table at its limit (half full). A longer run means MACs were chosen to share
    /// homes, which with a known multiplier is a few lines of arithmetic: thousands of MACs in one run,
    /// every frame to or from them walking it. An insert that makes a run longer than this rehashes the
    /// table with a random multiplier the guest cannot know (Linux's bridge and Open vSwitch salt their
    /// MAC hashes for the same reason), so every probe stays short.
    /// </summary>
    internal const int MaxRun = 128;

    private ulong _multiplier = FibonacciMultiplier;
    private long _rehashes;

    private int Home(ulong key) => (int)HomeOf(key, _multiplier, _shift);

    /// <summary>Multiply-shift hashing: the top bits of the key times the multiplier, <paramref name="shift"/> = 64 - log2(capacity).</summary>
    private static nuint HomeOf(ulong key, ulong multiplier, int shift) => (nuint)((key * multiplier) >> shift);

    /// <summary>The index of the slot holding <paramref name="key"/>, or -1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int Find(ulong key) =>
        TryProbe(ref MemoryMarshal.GetArrayDataReference(_slots), this, _multiplier, _shift, key, out var offset) ? (int)(offset / SlotSize) : -1;

    /// <summary>
    /// Finds <paramref name="key"/>'s slot as a byte offset into the table: linear probing from its home
    /// slot to the first empty one. A hit costs one multiply, one shift, one scale and one load, and the
    /// caller's slot reference no second address computation; the table's mask is read only on a
    /// collision, so a caller's loop keeps its registers. No bounds checks: the home is below the
    /// capacity and every step is masked by it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool TryProbe(ref Slot slots, ForwardingDatabase table, ulong multiplier, int shift, ulong key, out nuint offset)
    {
        offset = HomeOf(key, multiplier, shift) * SlotSize;
        while (true)
        {
            var k = Unsafe.AddByteOffset(ref slots, offset).Key;
            if (k == key) return true;
            if (k == 0) return false;
            offset = (offset + SlotSize) & table._byteMask;
        }
    }

    private const int MinCapacity = 64;

    /// <summary>
    /// The table grows with its entries, keeping at most half its slots in use, up to twice the limit:
    /// a bridge with a few hundred MACs probes a few cache lines' worth of table, not the whole
    /// limit's, and a flood of new MACs still ends at the same bounded size.
    /// </summary>
    [MemberNotNull(nameof(_slots), nameof(_learnedAt))]
    private void Resize(int capacity)
    {
        Slot[]? old = _slots;
        long[]? oldLearnedAt = _learnedAt;
        _slots = new Slot[capacity];
        _learnedAt = new long[capacity];
        _mask = capacity - 1;
        _byteMask = (nuint)_mask * SlotSize;
        _shift = 64 - System.Numerics.BitOperations.Log2((uint)capacity);
        if (old is null || oldLearnedAt is null) return;
        for (var i = 0; i < old.Length; i++)
        {
            if (old[i].Key == 0) continue;
            var to = FreeSlotFor(old[i].Key);
            _slots[to] = old[i];
            _learnedAt[to] = oldLearnedAt[i];
        }
    }

    /// <summary>Adds an entry for a key the table does not hold; the caller has checked the limit.</summary>
    private void Insert(ulong key, int port, bool isStatic, long now)
    {
        if ((_count + 1) * 2 > _slots.Length && _slots.Length < _maxCapacity) Resize(_slots.Length * 2);
        var i = FreeSlotFor(key);
        _slots[i] = new Slot { Key = key, Seen = Seen(isStatic ? Forever : Stamp(now), port) };
        _learnedAt[i] = now;
        _count++;
        if (RunThrough(i) > MaxRun)
        {
            _multiplier = (ulong)Random.Shared.NextInt64() | 1;
            _rehashes++;
            Resize(_slots.Length);
        }
    }

    /// <summary>The first empty slot from <paramref name="key"/>'s home on: where an insert puts it.</summary>
    private int FreeSlotFor(ulong key)
    {
        var i = Home(key);
        while (_slots[i].Key != 0) i = (i + 1) & _mask;
        return i;
    }

    /// <summary>The length of the run of occupied slots through slot <paramref name="i"/>, counted up to just past <see cref="MaxRun"/>.</summary>
    private int RunThrough(int i)
    {
        var run = 1;
        for (var j = (i - 1) & _mask; run <= MaxRun && _slots[j].Key != 0; j = (j - 1) & _mask) run++;
        for (var j = (i + 1) & _mask; run <= MaxRun && _slots[j].Key != 0; j = (j + 1) & _mask) run++;
        return run;
    }

    /// <summary>The longest run of occupied slots in the table (for tests).</summary>
    internal int LongestRun()
    {
        int longest = 0, run = 0;
        // Twice around, so a run that wraps past the last slot is counted whole.
        for (var n = 0; n < 2 * _slots.Length; n++)
        {
            run = _slots[n & _mask].Key != 0 ? run + 1 : 0;
            longest = Math.Max(longest, Math.Min(run, _slots.Length));
        }
        return longest;
    }

    /// <summary>Removes slot <paramref name="i"/>, shifting later members of its cluster back so probes stay unbroken.</summary>
    private void RemoveAt(int i)
    {
        var j = i;
        while (true)
        {
            _slots[i] = default;
            while (true)
            {
                j = (j + 1) & _mask;
                if (_slots[j].Key == 0)
                {
                    _count--;
                    return;
                }
                var home = Home(_slots[j].Key);
                // Leave the entry where it is when its home lies cyclically in (i, j].
                var stays = i <= j ? i < home && home <= j : i < home || home <= j;
                if (!stays) break;
            }
            _slots[i] = _slots[j];
            _learnedAt[i] = _learnedAt[j];
            i = j;
        }
    }

    /// <summary>Records that <paramref name="mac"/> on <paramref name="vlan"/> was seen on <paramref name="port"/>.</summary>
    public void Learn(ulong mac, int vlan, int port) => Learn(mac, vlan, CheckPort(port), _time.GetTimestamp());

    /// <summary>A port number an entry can hold: 0 to <see cref="MaxPort"/>.</summary>
    private static int CheckPort(int port)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(port);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(port, MaxPort);
        return port;
    }

    /// <summary>
    /// The per-frame learn: an entry already on this port is only refreshed (one compare and one store
    /// on the line the probe loaded); anything else (new MAC, move, damping, a full table) goes the long way.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void Learn(ulong mac, int vlan, int port, long now)
    {
        var key = Key(mac, vlan);
        var i = Find(key);
        if (i >= 0)
        {
            ref var slot = ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_slots), i);
            if (PortOf(slot) == port)
            {
                // A static entry's stamp is Forever: never refreshed.
                var stamp = Stamp(now);
                if (StampOf(slot) < stamp - _refreshStamps) slot.Seen = Seen(stamp, port);
                return;
            }
        }
        LearnSlow(key, i, port, now);
    }

    /// <summary>The table as the batch path reads it, with its fields in a value the caller keeps in registers across a loop.</summary>
    internal BatchView ForBatch(long now)
    {
        _batchStamp = Stamp(now);
        return new(this, _batchStamp);
    }

    /// <summary>
    /// The batch path's view of the table: its fields copied once, so a loop over frames does not reload
    /// them from the table after each store it makes into a frame. Valid while the caller holds the
    /// bridge's lock and only this view changes the table.
    /// </summary>
    internal readonly ref struct BatchView
    {
        private readonly ref Slot _slots;
        private readonly ForwardingDatabase _table;
        private readonly ulong _multiplier;
        private readonly int _shift;
        // The two times a frame is compared against, precomputed as slots hold them (a stamp above a
        // port of 0) so each per-frame test is one compare of the slot's Seen: a source last seen before
        // the first gets its stamp refreshed, a destination last seen before the second has aged out.
        // A static entry's Forever is never before either.
        private readonly ulong _refreshBefore;
        private readonly ulong _expiredBefore;

        public BatchView(ForwardingDatabase table, long stamp)
        {
            _slots = ref MemoryMarshal.GetArrayDataReference(table._slots);
            _table = table;
            _multiplier = table._multiplier;
            _shift = table._shift;
            _refreshBefore = Seen(Math.Max(stamp - table._refreshStamps, 0), 0);
            _expiredBefore = Seen(Math.Max(stamp - table._agingStamps, 0), 0);
        }

        /// <summary>
        /// Learns <paramref name="source"/> on <paramref name="port"/> and looks up <paramref name="destination"/>
        /// (keys built by <see cref="Key"/>; destination 0 for broadcast and multicast, not looked up), for
        /// the common frame only: a source already learned on this port (refreshed) and a destination that
        /// is live or not looked up. Anything else (a new or moved source, an unknown or aged-out
        /// destination) returns false with nothing done but the refresh, which is idempotent, and the
        /// frame takes the full path. No calls, so a caller's loop keeps its registers; what only a
        /// collision or a refresh needs is read from the table there.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public bool TryLearnAndLookup(ulong source, ulong destination, int port, out int found)
        {
            found = 0;
            if (!TryFind(source, out var at)) return false;
            ref var slot = ref Unsafe.AddByteOffset(ref _slots, at);
            if (PortOf(slot) != port) return false;
            if (slot.Seen < _refreshBefore) slot.Seen = Seen(_table._batchStamp, port);
            if (destination == 0)
            {
                found = -1;
                return true;
            }
            if (!TryFind(destination, out at)) return false;
            slot = ref Unsafe.AddByteOffset(ref _slots, at);
            if (slot.Seen < _expiredBefore) return false;
            found = PortOf(slot);
            return true;
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private bool TryFind(ulong key, out nuint offset) => TryProbe(ref _slots, _table, _multiplier, _shift, key, out offset);
    }

    /// <summary>The stamp of the batch in hand, which <see cref="BatchView"/> stamps refreshed sources with.</summary>
    private long _batchStamp;

    /// <summary>The lookup of a key: the port, or -1 when unknown or aged out (then removed).</summary>
    private int LookupKey(ulong key, long now)
    {
        var i = Find(key);
        if (i < 0) return -1;
        ref var slot = ref _slots[i];
        if (IsExpired(slot, Stamp(now)))
        {
            RemoveAt(i);
            return -1;
        }
        return PortOf(slot);
    }

    private void LearnSlow(ulong key, int i, int port, long now)
    {
        if (i >= 0)
        {
            ref var slot = ref _slots[i];
            if (IsStatic(slot)) return;
            var stamp = Stamp(now);
            if (PortOf(slot) != port)
            {
                if (!IsExpired(slot, stamp) && now - _learnedAt[i] < _persistenceTicks)
                {
                    _flapsDamped++;
                    return;
                }
                _learnedAt[i] = now;
                _moves++;
            }
            slot.Seen = Seen(stamp, port);
            return;
        }
        if (_count >= Limit)
        {
            if (now - _lastSweep >= _time.TimestampFrequency) Sweep(now);
            if (_count >= Limit)
            {
                _notLearnedFull++;
                return;
            }
        }
        Insert(key, port, isStatic: false, now);
        _learned++;
    }

    /// <summary>The port for (mac, vlan), or -1 when unknown or aged out.</summary>
    public int Lookup(ulong mac, int vlan) => Lookup(mac, vlan, _time.GetTimestamp());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal int Lookup(ulong mac, int vlan, long now) => LookupKey(Key(mac, vlan), now);

    /// <summary>Adds or replaces a static entry: never aged, never moved by learning.</summary>
    public bool AddStatic(ulong mac, int vlan, int port)
    {
        CheckPort(port);
        var key = Key(mac, vlan);
        var i = Find(key);
        var now = _time.GetTimestamp();
        if (i < 0)
        {
            if (_count >= Limit) return false;
            Insert(key, port, isStatic: true, now);
            return true;
        }
        _slots[i].Seen = Seen(Forever, port);
        _learnedAt[i] = now;
        return true;
    }

    /// <summary>The port of the static entry for (mac, vlan), or -1 when there is none or the entry was learned.</summary>
    public int StaticPort(ulong mac, int vlan)
    {
        var i = Find(Key(mac, vlan));
        return i >= 0 && IsStatic(_slots[i]) ? PortOf(_slots[i]) : -1;
    }

    public bool Remove(ulong mac, int vlan)
    {
        var i = Find(Key(mac, vlan));
        if (i < 0) return false;
        RemoveAt(i);
        return true;
    }

    /// <summary>Removes learned entries (and static ones when asked), of one port or all (<paramref name="port"/> -1).</summary>
    public int Flush(int port = -1, bool includeStatic = false) =>
        RemoveWhere((in Slot s, long _) => (port < 0 || PortOf(s) == port) && (includeStatic || !IsStatic(s)), 0);

    /// <summary>Drops every aged-out entry; the bridge calls it from housekeeping.</summary>
    public int Sweep() => Sweep(_time.GetTimestamp());

    private int Sweep(long now)
    {
        _lastSweep = now;
        return RemoveWhere((in Slot s, long stamp) => IsExpired(s, stamp), Stamp(now));
    }

    private delegate bool SlotPredicate(in Slot slot, long argument);

    private int RemoveWhere(SlotPredicate predicate, long argument)
    {
        var removed = 0;
        for (var i = 0; i < _slots.Length; i++)
        {
            // Backward shift may pull a later entry into i: look at i again until it keeps one.
            while (_slots[i].Key != 0 && predicate(in _slots[i], argument))
            {
                RemoveAt(i);
                removed++;
            }
        }
        return removed;
    }

    public List<FdbEntry> Snapshot()
    {
        var now = _time.GetTimestamp();
        var stamp = Stamp(now);
        var list = new List<FdbEntry>(_count);
        for (var i = 0; i < _slots.Length; i++)
        {
            ref readonly var slot = ref _slots[i];
            if (slot.Key == 0) continue;
            // A static entry is never seen as such: its age counts from when it was added.
            var ticks = IsStatic(slot) ? now - _learnedAt[i] : (stamp - StampOf(slot)) << _stampShift;
            var age = TimeSpan.FromSeconds(ticks / (double)_time.TimestampFrequency);
            list.Add(new FdbEntry(slot.Key & 0xFFFF_FFFF_FFFF, (int)(slot.Key >> 48 & 0xFFF), PortOf(slot), IsStatic(slot), age));
        }
        return list;
    }
}
