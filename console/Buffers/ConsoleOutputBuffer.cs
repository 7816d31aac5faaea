namespace XenIo.Consoled.Buffers;

/// <summary>
/// Guest output read from the ring and not yet handed to the log and the viewers, capped at the
/// console's <c>limit</c> (xenstore; libxl writes 1 MiB). Past the cap the middle is discarded exactly
/// as xenconsoled's <c>buffer_append</c> does: the oldest bytes and the newest bytes stay, the ones just
/// before the newest go, so a guest flooding a stalled consumer costs bounded memory and the reader
/// still sees how the flood began and where it is now. Thread-safe: one producer, one consumer.
/// </summary>
public sealed class ConsoleOutputBuffer
{
    public const int DefaultLimit = 1024 * 1024;
    private readonly object _gate = new();
    private readonly AsyncLatch _ready = new();
    private byte[] _data = [];
    private int _head;
    private int _tail;

    public ConsoleOutputBuffer(int limit = DefaultLimit)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        Limit = limit;
    }

    public int Limit { get; }

    /// <summary>Bytes thrown away by the overflow rule since creation.</summary>
    public long Discarded { get; private set; }

    public int Pending
    {
        get { lock (_gate) return _tail - _head; }
    }

    /// <summary>Completes when bytes may be pending; false once the buffer is closed.</summary>
    public ValueTask<bool> WaitAsync(CancellationToken cancellationToken) => _ready.WaitAsync(cancellationToken);

    public void Close() => _ready.Close();

    public void Append(ReadOnlySpan<byte> bytes)
    {
        if (bytes.IsEmpty) return;
        lock (_gate)
        {
            int pending = _tail - _head;
            if (bytes.Length > Limit)
            {
                Discarded += pending + bytes.Length - Limit;
                EnsureCapacity(Limit);
                bytes[^Limit..].CopyTo(_data);
                _head = 0;
                _tail = Limit;
            }
            else
            {
                int total = pending + bytes.Length;
                if (_data.Length - _tail < bytes.Length)
                {
                    if (_data.Length >= total)
                    {
                        Buffer.BlockCopy(_data, _head, _data, 0, pending);
                        _head = 0;
                        _tail = pending;
                    }
                    else
                    {
                        EnsureCapacity(total);
                    }
                }
                bytes.CopyTo(_data.AsSpan(_tail));
                _tail += bytes.Length;
                if (total > Limit)
                {
                    // buffer_append: memmove(data + limit - over, data + limit, over).
                    int over = total - Limit;
                    Buffer.BlockCopy(_data, _head + Limit, _data, _head + Limit - over, over);
                    _tail = _head + Limit;
                    Discarded += over;
                }
            }
        }
        _ready.Set();
    }

    /// <summary>Moves up to <paramref name="destination"/>.Length pending bytes out; returns the count.</summary>
    public int Take(Span<byte> destination)
    {
        lock (_gate)
        {
            int n = Math.Min(destination.Length, _tail - _head);
            _data.AsSpan(_head, n).CopyTo(destination);
            _head += n;
            if (_head == _tail) _head = _tail = 0;
            return n;
        }
    }

    private void EnsureCapacity(int needed)
    {
        if (_data.Length >= needed) return;
        int size = Math.Max(4096, _data.Length);
        while (size < needed) size *= 2;
        size = Math.Max(needed, Math.Min(size, 2 * Limit));
        var bigger = new byte[size];
        _data.AsSpan(_head, _tail - _head).CopyTo(bigger);
        _tail -= _head;
        _head = 0;
        _data = bigger;
    }
}
