namespace XenIo.Consoled.Buffers;

/// <summary>
/// The last <see cref="Capacity"/> bytes a guest printed, replayed to each viewer on attach (conserver's
/// replay), so output while nobody watched is not lost. A circular buffer; not thread-safe (the console
/// hub holds its lock around it).
/// </summary>
public sealed class Scrollback
{
    public const int DefaultCapacity = 64 * 1024;
    private readonly byte[] _data;
    private int _start;
    private int _count;

    public Scrollback(int capacity = DefaultCapacity)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(capacity);
        _data = new byte[capacity];
    }

    public int Capacity => _data.Length;

    public int Count => _count;

    public void Append(ReadOnlySpan<byte> bytes)
    {
        if (_data.Length == 0) return;
        if (bytes.Length >= _data.Length)
        {
            bytes[^_data.Length..].CopyTo(_data);
            _start = 0;
            _count = _data.Length;
            return;
        }
        int end = (_start + _count) % _data.Length;
        int first = Math.Min(bytes.Length, _data.Length - end);
        bytes[..first].CopyTo(_data.AsSpan(end));
        bytes[first..].CopyTo(_data);
        int overflow = _count + bytes.Length - _data.Length;
        if (overflow > 0)
        {
            _start = (_start + overflow) % _data.Length;
            _count = _data.Length;
        }
        else
        {
            _count += bytes.Length;
        }
    }

    /// <summary>Copies the kept bytes, oldest first, into <paramref name="destination"/> (at least <see cref="Count"/> long).</summary>
    public int CopyTo(Span<byte> destination)
    {
        int first = Math.Min(_count, _data.Length - _start);
        _data.AsSpan(_start, first).CopyTo(destination);
        _data.AsSpan(0, _count - first).CopyTo(destination[first..]);
        return _count;
    }
}
