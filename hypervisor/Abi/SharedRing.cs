using System.Numerics;
using System.Runtime.InteropServices;

namespace XenIo.Hypervisor.Abi;

/// <summary>
/// The header every <c>io/ring.h</c> shared ring page starts with (<c>DEFINE_RING_TYPES</c>'s
/// <c>struct *_sring</c> before its <c>ring[]</c>): free-running producer indices and the event
/// thresholds that suppress notifications. Entries start at <see cref="EntriesOffset"/>.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = Size)]
public struct SharedRingHeader
{
    public const int Size = 64;

    /// <summary>Where <c>ring[0]</c> starts in the page.</summary>
    public const int EntriesOffset = 64;

    [FieldOffset(0)] public uint ReqProd;
    [FieldOffset(4)] public uint ReqEvent;
    [FieldOffset(8)] public uint RspProd;
    [FieldOffset(12)] public uint RspEvent;

    /// <summary>The 4-byte <c>pvt</c> union (netif: <c>tapif_user</c>); zero unless a protocol says otherwise.</summary>
    [FieldOffset(16)] public uint Private;

    public const int ReqProdOffset = 0;
    public const int ReqEventOffset = 4;
    public const int RspProdOffset = 8;
    public const int RspEventOffset = 12;
}

/// <summary>Ring geometry, as <c>__RING_SIZE</c> computes it.</summary>
public static class RingGeometry
{
    public const int PageSize = 4096;
    public const int PageShift = 12;

    /// <summary>Largest multi-page ring order a backend offers (blkback's <c>max-ring-page-order</c> 4: 16 pages).</summary>
    public const int MaxRingPageOrder = 4;

    /// <summary>
    /// Slots in a ring of <paramref name="pages"/> pages whose union of request and response is
    /// <paramref name="entrySize"/> bytes: (bytes - header) / entry, rounded down to a power of two.
    /// </summary>
    public static int Slots(int entrySize, int pages = 1)
    {
        if (entrySize <= 0) throw new ArgumentOutOfRangeException(nameof(entrySize));
        if (pages <= 0 || pages > 1 << MaxRingPageOrder || !BitOperations.IsPow2(pages))
            throw new ArgumentOutOfRangeException(nameof(pages), pages, "a ring is 1, 2, 4, 8 or 16 pages (order 0..4)");
        return SlotsForBytes(entrySize, pages * PageSize);
    }

    /// <summary>
    /// Slots in <paramref name="bytes"/> of ring memory (header included), as <c>__RING_SIZE</c>
    /// computes it for any size: 0 when not even one entry fits.
    /// </summary>
    public static int SlotsForBytes(int entrySize, int bytes)
    {
        if (entrySize <= 0) throw new ArgumentOutOfRangeException(nameof(entrySize));
        long raw = ((long)bytes - SharedRingHeader.Size) / entrySize;
        return raw <= 0 ? 0 : 1 << BitOperations.Log2((uint)Math.Min(raw, int.MaxValue));
    }

    /// <summary>Pages for a ring of order <paramref name="order"/> (0..4).</summary>
    public static int PagesForOrder(int order) =>
        order is >= 0 and <= MaxRingPageOrder ? 1 << order
            : throw new ArgumentOutOfRangeException(nameof(order), order, "ring-page-order must be 0..4");
}
