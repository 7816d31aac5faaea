using System.Runtime.CompilerServices;
using XenIo.Hypervisor.Abi;

namespace XenIo.Hypervisor.Rings;

/// <summary>
/// Checks and lays out the memory a ring lives in (io/ring.h's <c>struct *_sring</c>): the 64-byte
/// <see cref="SharedRingHeader"/> then <c>ring[]</c>, whose slots are the union of request and response.
/// </summary>
internal static unsafe class SharedRingMemory
{
    /// <summary><c>sizeof(union *_sring_entry)</c> for request and response types of these sizes.</summary>
    public static int EntrySize<TReq, TRsp>() where TReq : unmanaged where TRsp : unmanaged =>
        sizeof(TReq) > sizeof(TRsp) ? sizeof(TReq) : sizeof(TRsp);

    /// <summary>Validates an attach and returns <c>nr_ents</c>. Memory is the caller's setup, not guest input, so a bad one throws.</summary>
    public static uint Slots(nint address, int length, int entrySize)
    {
        if (address == 0) throw new ArgumentNullException(nameof(address));
        // The indices are read and written as aligned 32-bit words, which must not tear.
        if ((address & 7) != 0) throw new ArgumentException("ring memory must be 8-byte aligned", nameof(address));
        int slots = RingGeometry.SlotsForBytes(entrySize, length);
        if (slots == 0) throw new ArgumentOutOfRangeException(nameof(length), length, "ring memory holds no entry");
        return (uint)slots;
    }

    /// <summary><c>SHARED_RING_INIT</c>, generalised to start at <paramref name="index"/> (0 in Xen).</summary>
    public static void Init(byte* sring, uint index)
    {
        Unsafe.InitBlockUnaligned(sring, 0, SharedRingHeader.Size);
        ref var header = ref *(SharedRingHeader*)sring;
        header.ReqProd = index;
        header.RspProd = index;
        header.ReqEvent = index + 1;
        header.RspEvent = index + 1;
        Interlocked.MemoryBarrier();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ref uint Field(byte* sring, int offset) => ref *(uint*)(sring + offset);
}
