namespace XenIo.Consoled.Rings;

/// <summary>
/// xenconsoled's guest rate limit: each period a guest may wake us <see cref="EventsPerPeriod"/> times
/// and hand us <see cref="BytesPerPeriod"/> bytes; past either budget we stop reading its ring until the
/// period ends (the guest's own ring fills and it waits, nobody else does). Pure: the caller passes the
/// clock, in <see cref="TimeSpan"/> ticks. A budget of 0 means unlimited.
/// </summary>
public sealed class GuestOutputRateLimiter
{
    private readonly long _periodTicks;
    private long _periodStart = long.MinValue;
    private long _events;
    private long _bytes;

    public GuestOutputRateLimiter(long bytesPerPeriod, int eventsPerPeriod, TimeSpan period)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytesPerPeriod);
        ArgumentOutOfRangeException.ThrowIfNegative(eventsPerPeriod);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(period, TimeSpan.Zero);
        BytesPerPeriod = bytesPerPeriod;
        EventsPerPeriod = eventsPerPeriod;
        _periodTicks = period.Ticks;
    }

    public long BytesPerPeriod { get; }
    public int EventsPerPeriod { get; }

    /// <summary>How many times the limiter has throttled the guest.</summary>
    public long Throttles { get; private set; }

    private void Roll(long now)
    {
        if (_periodStart != long.MinValue && now - _periodStart < _periodTicks) return;
        _periodStart = now;
        _events = 0;
        _bytes = 0;
    }

    public void CountEvent(long now)
    {
        Roll(now);
        _events++;
    }

    public void CountBytes(long now, int bytes)
    {
        Roll(now);
        _bytes += bytes;
    }

    /// <summary>Zero when the guest may be read now, else how long to stop reading it.</summary>
    public TimeSpan ThrottleFor(long now)
    {
        Roll(now);
        bool over = (BytesPerPeriod > 0 && _bytes >= BytesPerPeriod) || (EventsPerPeriod > 0 && _events > EventsPerPeriod);
        if (!over) return TimeSpan.Zero;
        Throttles++;
        return TimeSpan.FromTicks(Math.Max(1, _periodStart + _periodTicks - now));
    }

    /// <summary>The most a single read may take without overrunning this period's byte budget.</summary>
    public int Allowance(long now, int wanted)
    {
        Roll(now);
        if (BytesPerPeriod == 0) return wanted;
        return (int)Math.Clamp(BytesPerPeriod - _bytes, 0, wanted);
    }
}
