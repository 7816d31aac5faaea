using System.Buffers;
using XenIo.Hypervisor.Store.Transports;

namespace XenIo.Hypervisor.Store;

/// <summary>
/// What one connection has yet to send: replies and watch events in order, in one byte batch that a
/// single flusher at a time writes to the transport (one writer per connection). Bounds: a connection
/// that does not read stops having its requests read once <c>outstanding</c> replies wait, and its
/// watch events beyond the per-connection and per-watch limits are dropped (XSA-349), so a guest can
/// never make dom0 hold more than a few batches for it.
/// </summary>
internal sealed class XenstoreOutput
{
    private readonly object _gate = new();
    private readonly int _maxReplies;
    private readonly int _maxEvents;
    private readonly int _maxEventsPerWatch;
    private readonly AsyncSignal _drained = new();
    private byte[] _pending;
    private byte[] _sending;
    private int _pendingLength;
    private int _pendingReplies;
    private int _pendingEvents;
    private int _inFlightReplies;
    private uint _epoch = 1;
    private bool _flushing;
    private bool _closed;
    private long _droppedEvents;

    public XenstoreOutput(int maxReplies, int maxEvents, int maxEventsPerWatch)
    {
        _maxReplies = maxReplies;
        _maxEvents = maxEvents;
        _maxEventsPerWatch = maxEventsPerWatch;
        _pending = ArrayPool<byte>.Shared.Rent(16 * 1024);
        _sending = ArrayPool<byte>.Shared.Rent(16 * 1024);
    }

    public long DroppedEvents => Interlocked.Read(ref _droppedEvents);

    public int PendingBytes { get { lock (_gate) return _pendingLength; } }

    public int PendingEvents { get { lock (_gate) return _pendingEvents; } }

    public int PendingReplies { get { lock (_gate) return _pendingReplies; } }

    /// <summary>Replies in the batch being written right now.</summary>
    public int InFlightReplies { get { lock (_gate) return _inFlightReplies; } }

    /// <summary>Too many replies wait: stop reading this connection's requests until they drain.</summary>
    public bool IsBackedUp { get { lock (_gate) return _pendingReplies >= _maxReplies; } }

    public void AppendReply(ReadOnlySpan<byte> message)
    {
        lock (_gate)
        {
            if (_closed) return;
            Append(message);
            _pendingReplies++;
        }
    }

    /// <summary>Queues a watch event unless a bound is reached; false when dropped.</summary>
    public bool TryAppendEvent(XenstoreWatch watch, ReadOnlySpan<byte> message)
    {
        lock (_gate)
        {
            if (_closed) return false;
            if (watch.PendingEpoch != _epoch)
            {
                watch.PendingEpoch = _epoch;
                watch.PendingEvents = 0;
            }
            if (_pendingEvents >= _maxEvents || watch.PendingEvents >= _maxEventsPerWatch)
            {
                _droppedEvents++;
                return false;
            }
            Append(message);
            _pendingEvents++;
            watch.PendingEvents++;
            return true;
        }
    }

    private void Append(ReadOnlySpan<byte> message)
    {
        if (_pendingLength + message.Length > _pending.Length)
        {
            var bigger = ArrayPool<byte>.Shared.Rent(Math.Max(_pending.Length * 2, _pendingLength + message.Length));
            _pending.AsSpan(0, _pendingLength).CopyTo(bigger);
            ArrayPool<byte>.Shared.Return(_pending);
            _pending = bigger;
        }
        message.CopyTo(_pending.AsSpan(_pendingLength));
        _pendingLength += message.Length;
    }

    /// <summary>Claims the flusher role if there is something to send and nobody is sending.</summary>
    public bool TryBeginFlush()
    {
        lock (_gate)
        {
            if (_flushing || _closed || _pendingLength == 0) return false;
            _flushing = true;
            return true;
        }
    }

    /// <summary>Sends batches until nothing is pending; only the caller that won <see cref="TryBeginFlush"/>.</summary>
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask FlushAsync(IXenstoreStream stream)
    {
        try
        {
            while (true)
            {
                int length;
                lock (_gate)
                {
                    if (_pendingLength == 0 || _closed)
                    {
                        _flushing = false;
                        _inFlightReplies = 0;
                        _drained.Set();
                        return;
                    }
                    (_pending, _sending) = (_sending, _pending);
                    length = _pendingLength;
                    _pendingLength = 0;
                    _inFlightReplies = _pendingReplies;
                    _pendingReplies = 0;
                    _pendingEvents = 0;
                    _epoch++;
                }
                _drained.Set();
                await stream.WriteAsync(_sending.AsMemory(0, length), CancellationToken.None).ConfigureAwait(false);
            }
        }
        catch (Exception)
        {
            lock (_gate) { _flushing = false; }
            stream.Abort();
            Close();
        }
    }

    /// <summary>Waits until a flusher has taken a batch (or the output is closed).</summary>
    public ValueTask<bool> WaitDrainedAsync() => _drained.WaitAsync();

    public void Close()
    {
        lock (_gate)
        {
            if (_closed) return;
            _closed = true;
            _pendingLength = 0;
        }
        _drained.Close();
    }
}
