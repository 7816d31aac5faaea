using XenIo.Hypervisor.Memory;
using Xunit;

namespace XenIo.Hypervisor.Tests.Memory;

public sealed unsafe class PageCopyTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(127)]
    [InlineData(128)]
    [InlineData(129)]
    [InlineData(1000)]
    [InlineData(4095)]
    [InlineData(4096)]
    public void Copies_exactly_the_bytes_asked_and_nothing_around_them(int length)
    {
        var source = new byte[4096 + 64];
        Random.Shared.NextBytes(source);
        var dest = new byte[4096 + 64];
        Array.Fill(dest, (byte)0xA5);
        fixed (byte* s = source)
        fixed (byte* d = dest)
            PageCopy.Copy(s + 3, d + 5, length);
        Assert.Equal(source.AsSpan(3, length).ToArray(), dest.AsSpan(5, length).ToArray());
        Assert.All(dest.Take(5), b => Assert.Equal(0xA5, b));
        Assert.All(dest.Skip(5 + length), b => Assert.Equal(0xA5, b));
    }

    [Fact]
    public void Overlapping_ranges_move_as_memmove_does()
    {
        var buffer = Enumerable.Range(0, 4096 + 200).Select(i => (byte)i).ToArray();
        var expected = buffer.ToArray();
        Buffer.BlockCopy(expected, 0, expected, 100, 4096);
        fixed (byte* b = buffer) PageCopy.Copy(b, b + 100, 4096);
        Assert.Equal(expected, buffer);
    }
}
