namespace XenIo.VSwitch.Core;

/// <summary>
/// A token bucket with Firecracker's semantics (src/vmm/src/rate_limiter): <c>size</c> tokens refilled
/// linearly over <c>refill_time</c>, an extra <c>one_time_burst</c> spent first and never refilled, and a
/// request larger than the whole bucket let through when the bucket is full, which then owes the excess
/// (Firecracker's OverConsumption blocks the limiter for the same time): the budget goes negative and
/// nothing more passes until it has refilled, so a 64 KiB GSO frame is not refused forever yet costs
/// what it carries. The bucket starts full. Not thread-safe: the bridge calls it under its lock.
/// </summary>
public sealed class TokenBucket
{
    private readonly TimeProvider _time;
    private readonly long _refillTicks;
    private long _budget;
    private long _oneTimeBurst;
    private long _lastUpdate;

    public TokenBucket(long size, long oneTimeBurst, TimeSpan refillTime, TimeProvider? time = null)
    {
        if (size <= 0) throw new ArgumentOutOfRangeException(nameof(size), "a bucket needs a positive size");
        if (oneTimeBurst < 0) throw new ArgumentOutOfRangeException(nameof(oneTimeBurst));
        if (refillTime <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(refillTime), "a bucket needs a positive refill time");
        _time = time ?? TimeProvider.System;
        Size = size;
        _oneTimeBurst = oneTimeBurst;
        RefillTime = refillTime;
        _refillTicks = Math.Max(1, (long)(refillTime.TotalSeconds * _time.TimestampFrequency));
        _budget = size;
        _lastUpdate = _time.GetTimestamp();
    }

    public long Size { get; }
    public TimeSpan RefillTime { get; }
    /// <summary>Tokens available now (as of the last refill); negative while an over-size request is paid off.</summary>
    public long Budget => _budget;
    public long OneTimeBurst => _oneTimeBurst;

    /// <summary>Takes <paramref name="tokens"/>; false when there are not enough (nothing is taken from the refilling budget then).</summary>
    public bool TryConsume(long tokens)
    {
        if (tokens <= 0) return true;
        if (_oneTimeBurst > 0)
        {
            if (_oneTimeBurst >= tokens)
            {
                _oneTimeBurst -= tokens;
                return true;
            }
            tokens -= _oneTimeBurst;
            _oneTimeBurst = 0;
        }
        if (tokens > _budget)
        {
            Replenish();
            if (tokens > Size)
            {
                // Only a full bucket lends: the debt is then paid at the bucket's own rate.
                if (_budget < Size) return false;
                _budget = Size - tokens;
                return true;
            }
            if (tokens > _budget) return false;
        }
        _budget -= tokens;
        return true;
    }

    /// <summary>Gives back tokens taken for a frame another bucket then refused (Firecracker's force_replenish).</summary>
    public void Return(long tokens) => _budget = Math.Min(Size, _budget + tokens);

    private void Replenish()
    {
        var now = _time.GetTimestamp();
        var elapsed = now - _lastUpdate;
        if (elapsed <= 0) return;
        // Room up to a full bucket: more than Size while the bucket is in debt.
        var room = Size - _budget;
        var add = (long)Int128.Min(room, (Int128)elapsed * Size / _refillTicks);
        if (add <= 0)
        {
            if (room <= 0) _lastUpdate = now; // full: time passing while full earns nothing
            return;
        }
        // Advance only by the time the granted tokens account for, so fractions are not lost between calls.
        var used = add >= room ? elapsed : (long)((Int128)add * _refillTicks / Size);
        _lastUpdate += used;
        _budget += add;
    }
}

/// <summary>A byte bucket and a packet bucket; a frame passes only when both have room.</summary>
public sealed class RateLimiter(TokenBucket? bytes, TokenBucket? packets)
{
    public TokenBucket? Bytes { get; } = bytes;
    public TokenBucket? Packets { get; } = packets;

    public bool TryAdmit(int frameLength)
    {
        if (Bytes is not null && !Bytes.TryConsume(frameLength)) return false;
        if (Packets is not null && !Packets.TryConsume(1))
        {
            Bytes?.Return(frameLength);
            return false;
        }
        return true;
    }
}
