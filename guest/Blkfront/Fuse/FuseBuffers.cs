using System.Buffers;
using System.Runtime.InteropServices;

namespace XenIo.Guest.Blkfront.Fuse;

/// <summary>
/// One worker's buffers, allocated once: the request buffer a /dev/fuse read fills (a WRITE's data
/// arrives in it) and the data buffer a READ's reply is filled from. Native and page aligned so a
/// device may hand them to O_DIRECT or grant copies as they are. Exposed as Memory without
/// allocating per request.
/// </summary>
public sealed unsafe class FuseBuffers : IDisposable
{
    private readonly NativeBuffer _request;
    private readonly NativeBuffer _data;

    /// <summary>
    /// A request starts this far into its page, so that a WRITE's data, after the 40-byte header and
    /// the 40-byte fuse_write_in, starts on a page boundary: an O_DIRECT device takes it as it is.
    /// </summary>
    public const int RequestOffset = 4096 - 80;

    private readonly int _requestLength;

    public FuseBuffers(int maxWrite)
    {
        // The kernel wants room for the header, fuse_write_in and max_write bytes (else EINVAL on read).
        _requestLength = Math.Max(FuseConstants.MinReadBuffer, maxWrite + 4096);
        _request = new NativeBuffer(RequestOffset + _requestLength);
        _data = new NativeBuffer(maxWrite);
    }

    public Memory<byte> Request => _request.Memory.Slice(RequestOffset, _requestLength);
    public Memory<byte> Data => _data.Memory;
    public byte* RequestPointer => _request.Pointer + RequestOffset;
    public byte* DataPointer => _data.Pointer;

    public void Dispose()
    {
        ((IDisposable)_request).Dispose();
        ((IDisposable)_data).Dispose();
    }

    private sealed class NativeBuffer : MemoryManager<byte>
    {
        private readonly int _length;
        private byte* _pointer;

        public NativeBuffer(int length)
        {
            _length = length;
            _pointer = (byte*)NativeMemory.AlignedAlloc((nuint)length, 4096);
        }

        public byte* Pointer => _pointer;

        public override Span<byte> GetSpan() => new(_pointer, _length);

        public override MemoryHandle Pin(int elementIndex = 0) => new(_pointer + elementIndex);

        public override void Unpin() { }

        protected override void Dispose(bool disposing)
        {
            if (_pointer == null) return;
            NativeMemory.AlignedFree(_pointer);
            _pointer = null;
        }
    }
}

/// <summary>Where a worker's replies go: /dev/fuse in production, a list in tests.</summary>
public interface IFuseReplySink
{
    /// <summary>Sends fuse_out_header (error is a negative errno or 0) followed by <paramref name="body"/> and <paramref name="data"/>.</summary>
    void Reply(ulong unique, int error, ReadOnlySpan<byte> body, ReadOnlySpan<byte> data);
}
