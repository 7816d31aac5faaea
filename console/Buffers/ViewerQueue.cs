using System.Text;

namespace XenIo.Consoled.Buffers;

/// <summary>
/// What is waiting to be sent to one viewer, bounded so that a viewer that stops reading costs a fixed
/// amount of memory and never holds up the guest or the other viewers (the bug ser2net, QEMU,
/// cloud-hypervisor and Xen each had to fix). Guest output that does not fit is dropped whole, and the
/// viewer is told how much with a marker line once there is room again. Protocol replies (telnet
/// negotiation) have a small reserve above the bound so that a full queue never wedges negotiation.
/// </summary>
public sealed class ViewerQueue
{
    public const int DefaultCapacity = 256 * 1024;
    public const int ControlReserve = 4096;
    private readonly object _gate = new();
    private readonly AsyncLatch _ready = new();
    private readonly byte[] _data;
    private readonly int _capacity;
    private readonly byte[] _marker = new byte[64];
    private int _start;
    private int _count;
    private long _droppedSinceMarker;

    public ViewerQueue(int capacity = DefaultCapacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 256);
        _capacity = capacity;
        _data = new byte[capacity + ControlReserve];
    }

    /// <summary>Guest bytes dropped for this viewer since it attached.</summary>
    public long Dropped { get; private set; }

    public int Count
    {
        get { lock (_gate) return _count; }
    }

    public ValueTask<bool> WaitAsync(CancellationToken cancellationToken) => _ready.WaitAsync(cancellationToken);

    public void Close() => _ready.Close();

    /// <summary>Queues guest output (already encoded for the viewer) whole, or drops it whole.</summary>
    public bool TryWriteData(ReadOnlySpan<byte> bytes)
    {
        lock (_gate)
        {
            if (_droppedSinceMarker > 0)
            {
                int markerLength = FormatMarker(_droppedSinceMarker);
                if (_count + markerLength + bytes.Length > _capacity)
                {
                    Drop(bytes.Length);
                    return false;
                }
                Put(_marker.AsSpan(0, markerLength));
                _droppedSinceMarker = 0;
            }
            else if (_count + bytes.Length > _capacity)
            {
                Drop(bytes.Length);
                return false;
            }
            Put(bytes);
        }
        _ready.Set();
        return true;
    }

    /// <summary>Queues protocol bytes (negotiation, notices); false only if even the reserve is full.</summary>
    public bool TryWriteControl(ReadOnlySpan<byte> bytes)
    {
        lock (_gate)
        {
            if (_count + bytes.Length > _data.Length) return false;
            Put(bytes);
        }
        _ready.Set();
        return true;
    }

    public int Take(Span<byte> destination)
    {
        lock (_gate)
        {
            int n = Math.Min(destination.Length, _count);
            int first = Math.Min(n, _data.Length - _start);
            _data.AsSpan(_start, first).CopyTo(destination);
            _data.AsSpan(0, n - first).CopyTo(destination[first..]);
            _start = (_start + n) % _data.Length;
            _count -= n;
            return n;
        }
    }

    private void Drop(int n)
    {
        _droppedSinceMarker += n;
        Dropped += n;
    }

    private int FormatMarker(long dropped)
    {
        var text = $"\r\n[xenio: {dropped} bytes dropped]\r\n";
        return Encoding.ASCII.GetBytes(text, _marker);
    }

    private void Put(ReadOnlySpan<byte> bytes)
    {
        int end = (_start + _count) % _data.Length;
        int first = Math.Min(bytes.Length, _data.Length - end);
        bytes[..first].CopyTo(_data.AsSpan(end));
        bytes[first..].CopyTo(_data);
        _count += bytes.Length;
    }
}
