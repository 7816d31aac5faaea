using System.Runtime.InteropServices;

namespace XenIo.Hypervisor.Tests.Rings;

/// <summary>Page-aligned native memory for rings in one process; zeroed, freed on dispose.</summary>
internal sealed unsafe class RingTestMemory : IDisposable
{
    public RingTestMemory(int length)
    {
        Length = length;
        Address = (nint)NativeMemory.AlignedAlloc((nuint)length, 4096);
        Span.Clear();
    }

    public nint Address { get; }
    public int Length { get; }
    public Span<byte> Span => new((void*)Address, Length);

    public ref uint ReqProd => ref MemoryMarshal.Cast<byte, uint>(Span)[0];
    public ref uint ReqEvent => ref MemoryMarshal.Cast<byte, uint>(Span)[1];
    public ref uint RspProd => ref MemoryMarshal.Cast<byte, uint>(Span)[2];
    public ref uint RspEvent => ref MemoryMarshal.Cast<byte, uint>(Span)[3];

    public void Dispose() => NativeMemory.AlignedFree((void*)Address);
}
