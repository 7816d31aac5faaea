using System.Text;
using XenIo.Consoled.Buffers;
using Xunit;

namespace XenIo.Consoled.Tests;

public sealed class BufferTests
{
    /// <summary>xenconsoled's buffer_append, on a list: append, then drop [limit - over, limit).</summary>
    private static void ReferenceAppend(List<byte> model, ReadOnlySpan<byte> bytes, int limit)
    {
        model.AddRange(bytes.ToArray());
        if (model.Count <= limit) return;
        int over = model.Count - limit;
        model.RemoveRange(limit - over, over);
    }

    [Fact]
    public void Output_buffer_discards_the_middle_like_xenconsoled()
    {
        var buffer = new ConsoleOutputBuffer(limit: 10);
        buffer.Append("0123456789"u8);
        buffer.Append("abc"u8);
        var got = new byte[32];
        int n = buffer.Take(got);
        // keep [0, 7) and the last 3: "0123456" + "abc"
        Assert.Equal("0123456abc", Encoding.ASCII.GetString(got, 0, n));
        Assert.Equal(3, buffer.Discarded);
    }

    [Fact]
    public void Output_buffer_matches_the_reference_on_random_traffic()
    {
        var random = new Random(1234);
        for (int round = 0; round < 200; round++)
        {
            int limit = random.Next(1, 5000);
            var buffer = new ConsoleOutputBuffer(limit);
            var model = new List<byte>();
            var produced = new List<byte>();
            var consumed = new List<byte>();
            for (int step = 0; step < 100; step++)
            {
                if (random.Next(3) > 0)
                {
                    var bytes = new byte[random.Next(0, Math.Min(limit, 2048) + 1)];
                    random.NextBytes(bytes);
                    buffer.Append(bytes);
                    ReferenceAppend(model, bytes, limit);
                }
                else
                {
                    var dest = new byte[random.Next(0, 3000)];
                    int n = buffer.Take(dest);
                    Assert.Equal(Math.Min(dest.Length, model.Count), n);
                    Assert.Equal(model.GetRange(0, n), dest[..n]);
                    model.RemoveRange(0, n);
                }
                Assert.Equal(model.Count, buffer.Pending);
                Assert.True(buffer.Pending <= limit);
            }
        }
    }

    [Fact]
    public void Output_buffer_keeps_the_tail_of_an_append_larger_than_the_limit()
    {
        var buffer = new ConsoleOutputBuffer(limit: 4);
        buffer.Append("abcdefgh"u8);
        var got = new byte[8];
        Assert.Equal("efgh", Encoding.ASCII.GetString(got, 0, buffer.Take(got)));
    }

    [Fact]
    public void Scrollback_keeps_the_last_bytes_in_order()
    {
        var s = new Scrollback(8);
        s.Append("abc"u8);
        s.Append("defgh"u8);
        s.Append("ij"u8);
        var got = new byte[8];
        Assert.Equal("cdefghij", Encoding.ASCII.GetString(got, 0, s.CopyTo(got)));
        s.Append("0123456789"u8);
        Assert.Equal("23456789", Encoding.ASCII.GetString(got, 0, s.CopyTo(got)));
    }

    [Fact]
    public void Viewer_queue_drops_whole_chunks_and_marks_the_gap()
    {
        var q = new ViewerQueue(256);
        Assert.True(q.TryWriteData(new byte[200]));
        Assert.False(q.TryWriteData(new byte[100]));
        Assert.Equal(100, q.Dropped);
        Assert.True(q.TryWriteControl(new byte[100])); // negotiation still goes through (reserve)
        var sink = new byte[1000];
        Assert.Equal(300, q.Take(sink));
        Assert.True(q.TryWriteData("next"u8));
        int n = q.Take(sink);
        Assert.Equal("\r\n[xenio: 100 bytes dropped]\r\nnext", Encoding.ASCII.GetString(sink, 0, n));
        Assert.True(q.TryWriteData("more"u8));
        Assert.Equal("more", Encoding.ASCII.GetString(sink, 0, q.Take(sink)));
    }

    [Fact]
    public void Viewer_queue_wraps_around()
    {
        var q = new ViewerQueue(256);
        var sink = new byte[300];
        for (int i = 0; i < 100; i++)
        {
            var chunk = Enumerable.Range(i, 150).Select(x => (byte)x).ToArray();
            Assert.True(q.TryWriteData(chunk));
            Assert.Equal(150, q.Take(sink));
            Assert.Equal(chunk, sink[..150]);
        }
    }
}
