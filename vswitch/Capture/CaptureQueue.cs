using XenIo.VSwitch.Core;

namespace XenIo.VSwitch.Capture;

/// <summary>
/// A write-only stream that queues bytes in memory for a pump to take away: to an API client, or to a
/// capture file. The capture sink writes into it under the bridge's lock, so it never blocks on a
/// socket or a disk: the pump drains it off the forwarding path. Two buffers are swapped, so steady
/// state allocates nothing.
/// </summary>
public sealed class CaptureQueue : Stream
{
    private readonly Lock _gate = new();
    private byte[] _filling = new byte[64 * 1024];
    private byte[] _draining = new byte[64 * 1024];
    private int _length;
    private readonly SemaphoreSlim _ready = new(0, 1);

    public int Pending
    {
        get { lock (_gate) return _length; }
    }

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        lock (_gate)
        {
            if (_length + buffer.Length > _filling.Length)
                Array.Resize(ref _filling, Math.Max(_filling.Length * 2, _length + buffer.Length));
            buffer.CopyTo(_filling.AsSpan(_length));
            _length += buffer.Length;
        }
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    /// <summary>Wakes the pump: what is queued is taken now rather than at its next timeout.</summary>
    public override void Flush()
    {
        if (_ready.CurrentCount == 0)
        {
            try { _ready.Release(); }
            catch (SemaphoreFullException) { }
        }
    }

    /// <summary>Waits for a flush (or the timeout) and takes what is queued; the memory is valid until the next call.</summary>
    public async Task<ReadOnlyMemory<byte>> TakeAsync(TimeSpan wait, CancellationToken cancellationToken)
    {
        await WaitAsync(wait, cancellationToken).ConfigureAwait(false);
        return Take();
    }

    /// <summary>Waits for a flush or the timeout, whichever comes first.</summary>
    public Task WaitAsync(TimeSpan wait, CancellationToken cancellationToken) => _ready.WaitAsync(wait, cancellationToken);

    /// <summary>Takes what is queued without waiting; the memory is valid until the next take.</summary>
    public ReadOnlyMemory<byte> Take()
    {
        lock (_gate)
        {
            if (_draining.Length < _filling.Length) _draining = new byte[_filling.Length];
            (_filling, _draining) = (_draining, _filling);
            var n = _length;
            _length = 0;
            return _draining.AsMemory(0, n);
        }
    }

    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
}

/// <summary>
/// Puts a capture in front of a <see cref="CaptureQueue"/>: a slow reader or disk costs dropped records
/// (whole records, so the stream stays a valid pcap), never forwarding latency or unbounded memory.
/// </summary>
public sealed class BoundedCaptureSink(ICaptureSink inner, CaptureQueue queue, int maxQueuedBytes) : ICaptureSink
{
    /// <summary>What an API capture or a mirror's file may hold queued before records are dropped.</summary>
    public const int DefaultMaxQueuedBytes = 16 * 1024 * 1024;

    private long _dropped;
    private int _sinceFlush;
    private volatile bool _closed;

    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>
    /// A pcap (nanoseconds) or pcapng capture written into <paramref name="queue"/>, bounded by
    /// <paramref name="maxQueuedBytes"/>; <paramref name="continuesPcap"/>: the reader already has a pcap
    /// header (a file being continued). Disposing it disposes the queue.
    /// </summary>
    public static BoundedCaptureSink Over(CaptureQueue queue, bool pcapNg, int snaplen, bool continuesPcap = false, int maxQueuedBytes = DefaultMaxQueuedBytes) =>
        new(pcapNg ? new PcapNgSink(queue, snaplen) : new PcapSink(queue, snaplen, continues: continuesPcap), queue, maxQueuedBytes);

    /// <summary>Takes no more records (the pump behind the queue has failed): each is counted as dropped.</summary>
    public void Close() => _closed = true;

    public void Write(SwitchPort port, CaptureDirection direction, long unixNanoseconds, ReadOnlySpan<byte> frame, int originalLength)
    {
        if (_closed || queue.Pending + frame.Length > maxQueuedBytes)
        {
            Interlocked.Increment(ref _dropped);
            return;
        }
        inner.Write(port, direction, unixNanoseconds, frame, originalLength);
        // Wake the pump once per batch of frames rather than per frame.
        if (++_sinceFlush >= 32)
        {
            _sinceFlush = 0;
            queue.Flush();
        }
    }

    public void Flush() => inner.Flush();

    public void Dispose() => inner.Dispose();
}
