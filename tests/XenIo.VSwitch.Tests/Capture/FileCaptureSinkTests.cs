using XenIo.VSwitch.Capture;
using XenIo.VSwitch.Core;
using XenIo.VSwitch.Tests.Core;
using Xunit;

namespace XenIo.VSwitch.Tests.Capture;

/// <summary>
/// A persistent mirror's file is written off the forwarding path: a disk that fails stops the capture
/// with one log line, and a disk that stalls costs dropped records; in both, frames keep crossing the bridge.
/// </summary>
public sealed class FileCaptureSinkTests
{
    private readonly Bridge _bridge = new("br0", time: new ManualTime());
    private readonly RecordingPort _a = new("a");
    private readonly RecordingPort _b = new("b", record: false);
    private readonly List<string> _log = [];

    public FileCaptureSinkTests()
    {
        _bridge.AddPort(_a);
        _bridge.AddPort(_b);
    }

    private void Log(string line)
    {
        lock (_log) _log.Add(line);
    }

    [Fact]
    public void A_file_that_fails_stops_its_capture_with_one_log_line_and_frames_still_cross()
    {
        using var sink = new FileCaptureSink(new FullDisk(room: 100), "/captures/m.pcap", pcapNg: false, snaplen: 200, continues: false, Log);
        using var mirror = new Mirror("m", sink, clock: new SteppingClock());
        mirror.Attach(_bridge);
        for (var i = 0; i < 200; i++)
        {
            _a.Inject(Packets.Icmp(1, i));
            if (i % 50 == 0) mirror.Flush();
        }
        mirror.Flush();

        Assert.Equal(200, _b.SentCount);
        Assert.Contains("No space left on device", sink.Error);
        Assert.True(sink.Dropped > 0, "records after the failure are counted as dropped");
        Assert.Equal(0, mirror.Failed);
        lock (_log) Assert.Single(_log, l => l.Contains("/captures/m.pcap", StringComparison.Ordinal) && l.Contains("No space left on device", StringComparison.Ordinal));
    }

    [Fact]
    public void A_stalled_disk_costs_dropped_records_not_forwarding()
    {
        var disk = new StalledDisk();
        var sink = new FileCaptureSink(disk, "/captures/slow.pcap", pcapNg: false, snaplen: 200, continues: false, Log, maxQueuedBytes: 64 * 1024);
        var mirror = new Mirror("m", sink, clock: new SteppingClock());
        mirror.Attach(_bridge);
        // 2 records of about 110 bytes a frame: far more than 64 KiB while the disk is stuck on its first write.
        for (var i = 0; i < 5000; i++) _a.Inject(Packets.Icmp(1, i));

        Assert.Equal(5000, _b.SentCount);
        Assert.True(sink.Dropped > 0, "records beyond the queue's bound are dropped");
        disk.Release();
        mirror.Dispose();
        Assert.Null(sink.Error);
        Assert.True(disk.Written > 24, "what was queued reaches the file once the disk answers");
    }

    /// <summary>A file on a disk with <paramref name="room"/> bytes free.</summary>
    private sealed class FullDisk(int room) : WriteOnlyStream
    {
        private int _written;

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            if (_written + buffer.Length > room) throw new IOException("No space left on device");
            _written += buffer.Length;
        }
    }

    /// <summary>A file whose first write does not return until <see cref="Release"/>.</summary>
    private sealed class StalledDisk : WriteOnlyStream
    {
        private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public long Written;

        public void Release() => _released.SetResult();

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await _released.Task.ConfigureAwait(false);
            Write(buffer.Span);
        }

        public override void Write(ReadOnlySpan<byte> buffer) => Interlocked.Add(ref Written, buffer.Length);
    }

    private abstract class WriteOnlyStream : Stream
    {
        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            Write(buffer.Span);
            return ValueTask.CompletedTask;
        }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));
        public override void Flush() { }
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
