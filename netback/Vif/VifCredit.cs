using System.Diagnostics;

namespace XenIo.Netback.Vif;

/// <summary>
/// The TX credit scheduler of Linux netback (<c>tx_credit_exceeded</c>): every interval the credit
/// is refilled to <c>bytes</c> per interval, and a packet is taken only while credit is left. A packet
/// may overdraw the credit (so one packet larger than the credit still goes, once per interval) and the
/// deficit is paid back from the next refill. The limit can be swapped at runtime (the <c>rate</c> key
/// was rewritten); the TX thread reads it once per packet. Not thread-safe: one TX thread per queue.
/// </summary>
public sealed class VifCredit
{
    private VifRateLimit? _limit;
    private long _credit;
    private long _nextRefill;
    private long _intervalTicks;
    private VifRateLimit? _applied;

    public VifRateLimit? Limit => Volatile.Read(ref _limit);

    public void SetLimit(VifRateLimit? limit)
    {
        Volatile.Write(ref _limit, limit);
    }

    /// <summary>True when a packet may go now; false means wait <see cref="MillisecondsUntilRefill"/>.</summary>
    public bool TryTake(int bytes)
    {
        var limit = Volatile.Read(ref _limit);
        if (limit is null) return true;
        var now = Stopwatch.GetTimestamp();
        var interval = Math.Max(1, (long)limit.IntervalUsecs * Stopwatch.Frequency / 1_000_000);
        if (!Equals(limit, _applied))
        {
            // A new limit starts with a full credit.
            _applied = limit;
            _intervalTicks = interval;
            _credit = (long)Math.Min(limit.BytesPerInterval, long.MaxValue / 4);
            _nextRefill = now + interval;
        }
        if (now >= _nextRefill)
        {
            var periods = (now - _nextRefill) / interval + 1;
            var max = (long)Math.Min(limit.BytesPerInterval, long.MaxValue / 4);
            _credit = Math.Min(max, _credit + (long)Math.Min(periods, 1 << 20) * max);
            _nextRefill += periods * interval;
        }
        if (_credit <= 0) return false;
        _credit -= bytes;
        return true;
    }

    public int MillisecondsUntilRefill
    {
        get
        {
            var ticks = _nextRefill - Stopwatch.GetTimestamp();
            return ticks <= 0 ? 0 : (int)Math.Min(1000, ticks * 1000 / Stopwatch.Frequency + 1);
        }
    }
}
