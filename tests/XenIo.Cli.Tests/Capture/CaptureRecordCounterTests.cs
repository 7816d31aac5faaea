using System.Buffers.Binary;
using XenIo.Cli.Verbs;
using Xunit;

namespace XenIo.Cli.Tests.Capture;

/// <summary><c>xenio capture -c N</c> stops after exactly N whole records, wherever the reads split the stream.</summary>
public sealed class CaptureRecordCounterTests
{
    private static byte[] Pcap(int records, int frameBytes)
    {
        var stream = new byte[24 + records * (16 + frameBytes)];
        BinaryPrimitives.WriteUInt32LittleEndian(stream, 0xa1b2c3d4);
        for (int r = 0; r < records; r++)
        {
            var at = 24 + r * (16 + frameBytes);
            BinaryPrimitives.WriteUInt32LittleEndian(stream.AsSpan(at + 8), (uint)frameBytes);
            BinaryPrimitives.WriteUInt32LittleEndian(stream.AsSpan(at + 12), (uint)frameBytes);
            stream.AsSpan(at + 16, frameBytes).Fill((byte)r);
        }
        return stream;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(100)]
    [InlineData(4096)]
    public void Stops_after_the_last_wanted_record_whole_however_the_reads_split_it(int chunk)
    {
        const int frame = 300, limit = 5;
        var stream = Pcap(8, frame);
        var counter = new CaptureRecordCounter(pcapng: false);
        var kept = 0;
        for (int pos = 0; pos < stream.Length; pos += chunk)
        {
            var n = Math.Min(chunk, stream.Length - pos);
            var keep = counter.Feed(stream.AsSpan(pos, n), limit);
            kept += keep;
            // The capture loop's rule: stop when a read was cut or the last record is whole.
            if (keep < n || counter.Finished(limit)) break;
        }
        Assert.Equal(24 + limit * (16 + frame), kept);
        Assert.Equal(limit, counter.Records);
    }
}
