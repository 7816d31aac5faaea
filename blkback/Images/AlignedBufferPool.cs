using System.Collections.Concurrent;
using System.Runtime.InteropServices;

namespace XenIo.Blkback.Images;

/// <summary>A native buffer from <see cref="AlignedBufferPool"/>: page aligned, as O_DIRECT wants.</summary>
public readonly unsafe record struct AlignedBuffer(nint Address, int Length)
{
    public Span<byte> Span => new((void*)Address, Length);
}

/// <summary>
/// Page-aligned native buffers for O_DIRECT I/O, allocated once and reused: rented per request,
/// never allocated per request. Buffers are freed when the pool is disposed; a buffer must not be
/// used after that.
/// </summary>
public sealed unsafe class AlignedBufferPool : IDisposable
{
    public const int Alignment = 4096;

    private readonly ConcurrentStack<nint> _free = new();
    private readonly nint[] _all;
    private int _disposed;

    public AlignedBufferPool(int count, int bufferSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        if (bufferSize <= 0 || bufferSize % Alignment != 0)
            throw new ArgumentOutOfRangeException(nameof(bufferSize), bufferSize, "a multiple of 4096");
        BufferSize = bufferSize;
        _all = new nint[count];
        for (int i = 0; i < count; i++)
        {
            _all[i] = (nint)NativeMemory.AlignedAlloc((nuint)bufferSize, Alignment);
            NativeMemory.Clear((void*)_all[i], (nuint)bufferSize);
            _free.Push(_all[i]);
        }
    }

    public int BufferSize { get; }

    /// <summary>A free buffer, or false when all are in use (the caller queues the request).</summary>
    public bool TryRent(out AlignedBuffer buffer)
    {
        if (_free.TryPop(out var address))
        {
            buffer = new AlignedBuffer(address, BufferSize);
            return true;
        }
        buffer = default;
        return false;
    }

    public void Return(AlignedBuffer buffer) => _free.Push(buffer.Address);

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        foreach (var p in _all) NativeMemory.AlignedFree((void*)p);
    }
}
