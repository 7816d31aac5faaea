using System.Runtime.InteropServices;
using XenIo.Consoled.Rings;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Rings;
using Xunit;

namespace XenIo.Consoled.Tests;

public sealed unsafe class RingTests : IDisposable
{
    private readonly NativeConsolePage _page = new();

    public void Dispose() => _page.Dispose();

    private ref XenconsInterface Intf => ref *(XenconsInterface*)_page.Address;

    [Fact]
    public void Output_wraps_around_the_ring_and_consumes()
    {
        var ring = new ConsoleRing(_page.Address);
        var guest = new ConsoleFrontendRing(_page.Address);
        Intf.OutCons = Intf.OutProd = uint.MaxValue - 10; // free-running indices across the u32 wrap
        var data = Enumerable.Range(0, 2048).Select(i => (byte)(i * 7)).ToArray();
        Assert.Equal(2048, guest.WriteOutput(data));
        Assert.Equal(0, guest.WriteOutput(data)); // full
        var got = new byte[4096];
        Assert.Equal(ConsoleRingStatus.Ok, ring.ReadOutput(got, out int read));
        Assert.Equal(2048, read);
        Assert.Equal(data, got[..read]);
        Assert.Equal(Intf.OutProd, Intf.OutCons);
    }

    [Fact]
    public void Output_read_takes_only_what_fits()
    {
        var ring = new ConsoleRing(_page.Address);
        var guest = new ConsoleFrontendRing(_page.Address);
        guest.WriteOutput("hello world"u8);
        var got = new byte[5];
        ring.ReadOutput(got, out int read);
        Assert.Equal("hello"u8.ToArray(), got[..read]);
        var rest = new byte[64];
        ring.ReadOutput(rest, out read);
        Assert.Equal(" world"u8.ToArray(), rest[..read]);
    }

    [Fact]
    public void Input_is_published_for_the_guest_and_bounded_by_the_ring()
    {
        var ring = new ConsoleRing(_page.Address);
        var guest = new ConsoleFrontendRing(_page.Address);
        Intf.InCons = Intf.InProd = 1000;
        var data = Enumerable.Range(0, 1500).Select(i => (byte)i).ToArray();
        Assert.Equal(ConsoleRingStatus.Ok, ring.WriteInput(data, out int written));
        Assert.Equal(XenconsInterface.InSize, written);
        var got = new byte[2000];
        Assert.Equal(1024, guest.ReadInput(got));
        Assert.Equal(data[..1024], got[..1024]);
    }

    [Theory]
    [InlineData(0u, 2049u)]
    [InlineData(5u, 4u)]          // prod behind cons: a huge unsigned difference
    [InlineData(0u, 0x80000000u)]
    public void A_ring_claiming_more_than_its_size_is_broken(uint cons, uint prod)
    {
        var ring = new ConsoleRing(_page.Address);
        Intf.OutCons = cons;
        Intf.OutProd = prod;
        Assert.Equal(ConsoleRingStatus.Broken, ring.ReadOutput(new byte[4096], out int read));
        Assert.Equal(0, read);
        Assert.Equal(cons, Intf.OutCons); // nothing consumed

        Intf.InCons = 0;
        Intf.InProd = 1025;
        Assert.Equal(ConsoleRingStatus.Broken, ring.WriteInput("x"u8, out int written));
        Assert.Equal(0, written);
    }

    [Fact]
    public void Layout_matches_io_console_h()
    {
        Assert.Equal(3088, Marshal.SizeOf<XenconsInterface>());
        Assert.Equal(3072, (int)Marshal.OffsetOf<XenconsInterface>(nameof(XenconsInterface.InCons)));
        Assert.Equal(3084, (int)Marshal.OffsetOf<XenconsInterface>(nameof(XenconsInterface.OutProd)));
    }

    [Fact]
    public void Rate_limiter_throttles_past_the_byte_budget_until_the_period_ends()
    {
        var limiter = new GuestOutputRateLimiter(1000, 0, TimeSpan.FromMilliseconds(100));
        long t = TimeSpan.FromSeconds(10).Ticks;
        Assert.Equal(TimeSpan.Zero, limiter.ThrottleFor(t));
        Assert.Equal(600, limiter.Allowance(t, 600));
        limiter.CountBytes(t, 600);
        Assert.Equal(400, limiter.Allowance(t, 2048));
        limiter.CountBytes(t, 400);
        var pause = limiter.ThrottleFor(t + TimeSpan.FromMilliseconds(30).Ticks);
        Assert.Equal(TimeSpan.FromMilliseconds(70), pause);
        Assert.Equal(1, limiter.Throttles);
        Assert.Equal(TimeSpan.Zero, limiter.ThrottleFor(t + TimeSpan.FromMilliseconds(100).Ticks));
    }

    [Fact]
    public void Rate_limiter_throttles_a_guest_that_kicks_too_often()
    {
        var limiter = new GuestOutputRateLimiter(0, 30, TimeSpan.FromMilliseconds(200));
        long t = 1;
        for (int i = 0; i < 30; i++) limiter.CountEvent(t);
        Assert.Equal(TimeSpan.Zero, limiter.ThrottleFor(t));
        limiter.CountEvent(t);
        Assert.True(limiter.ThrottleFor(t) > TimeSpan.Zero);
    }
}
