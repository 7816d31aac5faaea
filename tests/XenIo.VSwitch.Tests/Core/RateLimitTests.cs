using XenIo.VSwitch.Core;
using Xunit;
using static XenIo.VSwitch.Tests.Core.Frame;

namespace XenIo.VSwitch.Tests.Core;

public class RateLimitTests
{
    private readonly ManualTime _time = new();

    [Fact]
    public void A_bucket_starts_full_and_refills_linearly()
    {
        var bucket = new TokenBucket(1000, 0, TimeSpan.FromSeconds(1), _time);
        Assert.True(bucket.TryConsume(1000));
        Assert.False(bucket.TryConsume(1));
        _time.Advance(TimeSpan.FromMilliseconds(250));
        Assert.True(bucket.TryConsume(250));
        Assert.False(bucket.TryConsume(1));
        _time.Advance(TimeSpan.FromSeconds(10));
        Assert.True(bucket.TryConsume(1000)); // capped at size, not 10,000
        Assert.False(bucket.TryConsume(1));
    }

    [Fact]
    public void The_one_time_burst_is_spent_first_and_never_refilled()
    {
        var bucket = new TokenBucket(100, 500, TimeSpan.FromSeconds(1), _time);
        Assert.True(bucket.TryConsume(500));
        Assert.Equal(0, bucket.OneTimeBurst);
        Assert.Equal(100, bucket.Budget);
        Assert.True(bucket.TryConsume(100));
        Assert.False(bucket.TryConsume(1));
        _time.Advance(TimeSpan.FromSeconds(5));
        Assert.Equal(0, bucket.OneTimeBurst);
    }

    [Fact]
    public void A_request_larger_than_the_bucket_passes_from_a_full_bucket_which_then_pays_it_off()
    {
        var bucket = new TokenBucket(1000, 0, TimeSpan.FromSeconds(1), _time);
        Assert.True(bucket.TryConsume(9000));
        Assert.Equal(-8000, bucket.Budget);
        Assert.False(bucket.TryConsume(9000));
        Assert.False(bucket.TryConsume(1));
        // 9000 bytes at 1000 B/s: the next one passes once 9 s have refilled the bucket, not before.
        _time.Advance(TimeSpan.FromSeconds(8.5));
        Assert.False(bucket.TryConsume(9000));
        _time.Advance(TimeSpan.FromSeconds(0.5));
        Assert.True(bucket.TryConsume(9000));
        Assert.False(bucket.TryConsume(1));
    }

    [Theory]
    [InlineData(100, 1500)]     // MTU frames through a 100 B/s limit
    [InlineData(60_000, 65_536)] // GSO frames through a limit under 64 KiB/s
    public void Frames_larger_than_the_bucket_are_held_to_its_rate(long bytesPerSecond, int frame)
    {
        var limiter = new RateLimiter(new TokenBucket(bytesPerSecond, 0, TimeSpan.FromSeconds(1), _time), null);
        long passed = 0;
        for (var step = 0; step < 10_000; step++) // 100 s in steps of 10 ms
        {
            if (limiter.TryAdmit(frame)) passed += frame;
            _time.Advance(TimeSpan.FromMilliseconds(10));
        }
        // At most the rate for 100 s plus the one frame a full bucket lends.
        Assert.InRange(passed, bytesPerSecond * 100 - frame, bytesPerSecond * 100 + frame);
    }

    [Fact]
    public void A_packet_bucket_refusal_gives_back_an_over_size_frame_s_debt()
    {
        var limiter = new RateLimiter(new TokenBucket(1000, 0, TimeSpan.FromSeconds(1), _time), new TokenBucket(1, 0, TimeSpan.FromSeconds(1), _time));
        Assert.True(limiter.TryAdmit(100));
        _time.Advance(TimeSpan.FromSeconds(0.1));
        Assert.False(limiter.TryAdmit(9000));
        Assert.Equal(1000, limiter.Bytes!.Budget);
    }

    [Fact]
    public void A_packet_bucket_refusal_gives_the_bytes_back()
    {
        var limiter = new RateLimiter(new TokenBucket(10_000, 0, TimeSpan.FromSeconds(1), _time), new TokenBucket(1, 0, TimeSpan.FromSeconds(1), _time));
        Assert.True(limiter.TryAdmit(100));
        Assert.False(limiter.TryAdmit(100));
        Assert.Equal(9_900, limiter.Bytes!.Budget);
    }

    [Fact]
    public void A_broadcast_storm_is_held_by_the_ingress_limit()
    {
        var bridge = new Bridge("br0", time: _time);
        var storm = new RecordingPort("storm", record: false) { IngressLimit = new RateLimiter(null, new TokenBucket(100, 0, TimeSpan.FromSeconds(1), _time)) };
        var victim = new RecordingPort("victim", record: false);
        bridge.AddPort(storm);
        bridge.AddPort(victim);
        var frame = Build(Broadcast, Mac(1));
        for (var i = 0; i < 100_000; i++)
        {
            storm.Inject(frame);
            if (i % 1000 == 999) _time.Advance(TimeSpan.FromMilliseconds(100)); // 10 s in all
        }
        // 100 at start + 100 per second for 10 s (the last refill lands after the last frame).
        Assert.InRange(victim.SentCount, 1000, 1100);
        Assert.Equal(100_000 - victim.SentCount, storm.Counters.Drops(DropReason.RateLimit));
    }

    [Fact]
    public void The_egress_limit_drops_at_the_destination()
    {
        var bridge = new Bridge("br0", time: _time);
        var src = new RecordingPort("src");
        var dst = new RecordingPort("dst") { EgressLimit = new RateLimiter(new TokenBucket(1000, 0, TimeSpan.FromSeconds(1), _time), null) };
        bridge.AddPort(src);
        bridge.AddPort(dst);
        for (var i = 0; i < 10; i++) src.Inject(Build(Broadcast, Mac(1), payload: 486)); // 500 bytes
        Assert.Equal(2, dst.Sent.Count);
        Assert.Equal(8, dst.Counters.Drops(DropReason.RateLimit));
    }
}
