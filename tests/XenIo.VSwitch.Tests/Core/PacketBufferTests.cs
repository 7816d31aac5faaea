using XenIo.Net.Frames;
using XenIo.VSwitch.Core;
using Xunit;

namespace XenIo.VSwitch.Tests.Core;

/// <summary>
/// A PacketBuffer's frame always lies inside its array with room for a tag in front: the bridge's batch
/// path relies on that instead of checking each frame, so a port that sets bounds that break it must
/// fail where it sets them, and a buffer's bounds must never change to something unchecked.
/// </summary>
public class PacketBufferTests
{
    [Theory]
    [InlineData(0, 60)] // no headroom for a tag
    [InlineData(3, 60)]
    [InlineData(64, -1)]
    [InlineData(64, 101)] // one byte past the end
    [InlineData(int.MaxValue, 2)] // offset + length overflows an int
    [InlineData(64, int.MaxValue)]
    public void Frames_that_do_not_fit_are_refused_where_they_are_set(int offset, int length)
    {
        var buffer = PacketBuffer.Wrap(new byte[164], PacketBuffer.Headroom, 14);
        Assert.Throws<ArgumentOutOfRangeException>(() => buffer.SetFrame(offset, length));
        Assert.Throws<ArgumentOutOfRangeException>(() => PacketBuffer.Wrap(new byte[164], offset, length));
        // The refused bounds left the buffer as it was.
        Assert.Equal((PacketBuffer.Headroom, 14), (buffer.Offset, buffer.Length));
    }

    [Theory]
    [InlineData(PacketBuffer.MinHeadroom, 160)]
    [InlineData(64, 100)] // ends exactly at the array's end
    [InlineData(164, 0)]
    public void Frames_that_fit_are_taken(int offset, int length)
    {
        var buffer = PacketBuffer.Wrap(new byte[164], PacketBuffer.Headroom, 14);
        buffer.SetFrame(offset, length);
        Assert.Equal((offset, length), (buffer.Offset, buffer.Length));
        Assert.Equal(length, buffer.Frame.Length);
    }

    [Fact]
    public void A_pooled_buffer_comes_back_empty_at_its_headroom()
    {
        var pool = new PacketBufferPool(2048, 1);
        var buffer = pool.Rent()!;
        Assert.True(buffer.TrySet(new byte[1500], FrameMetadata.Plain(1500)));
        buffer.SetFrame(PacketBuffer.MinHeadroom, 100);
        buffer.Return();
        var again = pool.Rent();
        Assert.Same(buffer, again);
        Assert.Equal((PacketBuffer.Headroom, 0), (again!.Offset, again.Length));
        Assert.False(again.TrySet(new byte[2049], FrameMetadata.Plain(2049)));
    }
}
