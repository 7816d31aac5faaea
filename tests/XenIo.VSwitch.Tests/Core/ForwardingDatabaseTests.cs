using XenIo.VSwitch.Core;
using Xunit;

namespace XenIo.VSwitch.Tests.Core;

public class ForwardingDatabaseTests
{
    /// <summary>The open-addressing table against a Dictionary model, over random learns, removals, flushes and aging.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Agrees_with_a_dictionary_model(int seed)
    {
        var time = new ManualTime();
        var fdb = new ForwardingDatabase(limit: 64, aging: TimeSpan.FromSeconds(10), minPersistence: TimeSpan.Zero, time: time);
        var model = new Dictionary<(ulong, int), (int Port, long Seen)>();
        var random = new Random(seed);
        long now = 0;
        for (var step = 0; step < 200_000; step++)
        {
            var mac = (ulong)random.Next(200);
            var vlan = random.Next(3);
            switch (random.Next(100))
            {
                case < 60:
                {
                    var port = random.Next(4);
                    fdb.Learn(mac, vlan, port);
                    if (model.ContainsKey((mac, vlan)) || model.Count < 64) model[(mac, vlan)] = (port, now);
                    break;
                }
                case < 85:
                {
                    var expected = model.TryGetValue((mac, vlan), out var e) ? e.Port : -1;
                    Assert.Equal(expected, fdb.Lookup(mac, vlan));
                    break;
                }
                case < 97:
                    Assert.Equal(model.Remove((mac, vlan)), fdb.Remove(mac, vlan));
                    break;
                case < 98:
                {
                    var port = random.Next(4);
                    var gone = model.Where(kv => kv.Value.Port == port).Select(kv => kv.Key).ToList();
                    foreach (var k in gone) model.Remove(k);
                    Assert.Equal(gone.Count, fdb.Flush(port));
                    break;
                }
                default:
                {
                    time.Advance(TimeSpan.FromSeconds(6));
                    now += 6;
                    var old = model.Where(kv => now - kv.Value.Seen > 10).Select(kv => kv.Key).ToList();
                    foreach (var k in old) model.Remove(k);
                    Assert.Equal(old.Count, fdb.Sweep());
                    break;
                }
            }
            Assert.Equal(model.Count, fdb.Count);
        }
        var snapshot = fdb.Snapshot().Select(e => ((e.Mac, e.Vlan), e.Port)).OrderBy(x => x).ToList();
        Assert.Equal(model.Select(kv => (kv.Key, kv.Value.Port)).OrderBy(x => x).ToList(), snapshot);
    }

    /// <summary>
    /// A source seen again within 1/300 of the aging time keeps its timestamp (the learn only reads its
    /// slot); seen later, it is refreshed. Either way it never ages out earlier than aging allows
    /// counted from the last refresh, nor later than that plus the refresh granularity.
    /// </summary>
    /// <param name="uptimeDays">How long the table has been up first: a daemon up for decades still refreshes and ages its entries (the table's stamps do not run out).</param>
    [Theory]
    [InlineData(0)]
    [InlineData(365 * 20)]
    public void Refresh_of_a_known_source_is_coarse_but_bounded(int uptimeDays)
    {
        var time = new ManualTime();
        var fdb = new ForwardingDatabase(limit: 16, aging: TimeSpan.FromSeconds(300), time: time);
        time.Advance(TimeSpan.FromDays(uptimeDays));
        fdb.Learn(1, 0, 3);
        time.Advance(TimeSpan.FromMilliseconds(500));
        fdb.Learn(1, 0, 3);
        Assert.InRange(Assert.Single(fdb.Snapshot()).Age, TimeSpan.FromMilliseconds(499), TimeSpan.FromMilliseconds(501));

        time.Advance(TimeSpan.FromSeconds(2));
        fdb.Learn(1, 0, 3);
        Assert.Equal(TimeSpan.Zero, Assert.Single(fdb.Snapshot()).Age);
        time.Advance(TimeSpan.FromSeconds(299.5));
        fdb.Learn(1, 0, 3);
        time.Advance(TimeSpan.FromSeconds(299.5));
        Assert.Equal(3, fdb.Lookup(1, 0));
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(-1, fdb.Lookup(1, 0));
    }

    /// <summary>
    /// The table starts small and doubles as entries arrive, never more than half full and never past
    /// twice the limit; every entry (its port, static flag and age) survives each growth.
    /// </summary>
    [Fact]
    public void Grows_with_its_entries_up_to_twice_the_limit_and_keeps_them()
    {
        var time = new ManualTime();
        var fdb = new ForwardingDatabase(limit: 1000, time: time);
        Assert.Equal(64, fdb.Capacity);
        Assert.True(fdb.AddStatic(0xAA, 7, 9));
        for (var mac = 1UL; mac <= 999; mac++)
        {
            fdb.Learn(mac, (int)(mac % 3), (int)(mac % 5));
            time.Advance(TimeSpan.FromMilliseconds(1));
            Assert.InRange(fdb.Capacity, 2 * fdb.Count, 2048);
            Assert.True(System.Numerics.BitOperations.IsPow2(fdb.Capacity));
        }
        Assert.Equal(1000, fdb.Count);
        Assert.Equal(2048, fdb.Capacity);
        for (var mac = 1UL; mac <= 999; mac++) Assert.Equal((int)(mac % 5), fdb.Lookup(mac, (int)(mac % 3)));
        var entries = fdb.Snapshot();
        Assert.Contains(new FdbEntry(0xAA, 7, 9, true, entries.Single(e => e.Static).Age), entries);
        // The table keeps times to about ten microseconds (its stamps).
        var age = entries.Single(e => e.Mac == 1).Age;
        Assert.InRange(age, TimeSpan.FromMilliseconds(999) - TimeSpan.FromMicroseconds(20), TimeSpan.FromMilliseconds(999) + TimeSpan.FromMicroseconds(20));

        // At the limit nothing new is learned and the table stays as it is.
        fdb.Learn(5000, 0, 1);
        Assert.Equal(-1, fdb.Lookup(5000, 0));
        Assert.Equal(2048, fdb.Capacity);
    }

    /// <summary>
    /// A guest that knows the table's starting multiplier picks MACs that all share one home. The insert
    /// that makes their run longer than <see cref="ForwardingDatabase.MaxRun"/> rehashes the table with
    /// a random multiplier: every run stays short, every entry is still found, nothing is lost.
    /// </summary>
    [Fact]
    public void Macs_chosen_to_share_a_home_make_the_table_rehash_and_every_run_stays_short()
    {
        var fdb = new ForwardingDatabase(limit: 8192, time: new ManualTime());
        var crafted = MacsSharingAHome(count: 3000, seed: 5);
        foreach (var (mac, vlan) in crafted) fdb.Learn(mac, vlan, 1);
        Assert.Equal(crafted.Count, fdb.Count);
        Assert.InRange(fdb.Rehashes, 1, 10);
        Assert.InRange(fdb.LongestRun(), 1, ForwardingDatabase.MaxRun);
        foreach (var (mac, vlan) in crafted) Assert.Equal(1, fdb.Lookup(mac, vlan));
    }

    /// <summary>An entry holds a 16-bit port: a larger one is refused, not cut short into another port.</summary>
    [Fact]
    public void Ports_beyond_the_entry_limit_are_refused()
    {
        var fdb = new ForwardingDatabase(limit: 16, time: new ManualTime());
        fdb.Learn(1, 0, ForwardingDatabase.MaxPort);
        Assert.Equal(ForwardingDatabase.MaxPort, fdb.Lookup(1, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => fdb.Learn(2, 0, ForwardingDatabase.MaxPort + 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => fdb.AddStatic(3, 0, -1));
        Assert.Equal(1, fdb.Count);
    }

    /// <summary>MACs numbered the way toolstacks number their guests' spread over the table as they are: no rehash.</summary>
    [Fact]
    public void Consecutive_macs_need_no_rehash()
    {
        var fdb = new ForwardingDatabase(limit: 8192, time: new ManualTime());
        for (var n = 0UL; n < 8192; n++) fdb.Learn(0x5254_0012_0000 + n, 1, (int)(n % 4));
        Assert.Equal(8192, fdb.Count);
        Assert.Equal(0, fdb.Rehashes);
        Assert.InRange(fdb.LongestRun(), 1, 8);
    }

    /// <summary>
    /// (MAC, VLAN) pairs whose keys, times the Fibonacci multiplier, agree in their top 14 bits: the same
    /// home in any table up to 16384 slots. Found by running the hash backwards: a product with those
    /// bits fixed, times the multiplier's inverse, is a key; kept when it has the form a key takes.
    /// </summary>
    private static List<(ulong Mac, int Vlan)> MacsSharingAHome(int count, int seed)
    {
        const ulong multiplier = 0x9E3779B97F4A7C15UL;
        var inverse = multiplier; // Newton's iteration doubles the correct low bits each step.
        for (var step = 0; step < 6; step++) inverse *= 2 - multiplier * inverse;
        Assert.Equal(1UL, multiplier * inverse);
        var random = new Random(seed);
        var found = new HashSet<(ulong, int)>();
        while (found.Count < count)
        {
            var product = 0x2A5UL << 50 | (ulong)random.NextInt64() & ((1UL << 50) - 1);
            var key = product * inverse;
            // The occupied bit set and nothing between it and the VLAN.
            if (key >> 60 != 0x8) continue;
            found.Add((key & 0xFFFF_FFFF_FFFF, (int)(key >> 48 & 0xFFF)));
        }
        return [.. found];
    }
}
