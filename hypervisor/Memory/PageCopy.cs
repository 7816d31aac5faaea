using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace XenIo.Hypervisor.Memory;

/// <summary>
/// The copy under grant copy: between a guest's page and a backend's buffer (or another guest's page),
/// up to a page at a time. Whole 128-byte blocks move as four 32-byte vector loads then four stores,
/// and a tail shorter than a block as the last 128 bytes again; for the page-sized copies backends make
/// this beats the general memmove (glibc's <c>rep movsb</c> has a start-up cost that a 4 KiB copy in
/// cache does not amortise). Ranges that overlap, copies shorter than a block and machines without
/// 256-bit vectors take <see cref="Buffer.MemoryCopy"/>.
/// </summary>
public static unsafe class PageCopy
{
    private const int Block = 128;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Copy(byte* source, byte* dest, int length)
    {
        if (length >= Block && Vector256.IsHardwareAccelerated && (dest + length <= source || source + length <= dest))
        {
            CopyBlocks(source, dest, length);
            return;
        }
        Buffer.MemoryCopy(source, dest, length, length);
    }

    private static void CopyBlocks(byte* source, byte* dest, int length)
    {
        int o = 0;
        for (; o <= length - Block; o += Block) CopyBlock(source + o, dest + o);
        // The tail: the last whole block, overlapping what was just written with the same bytes.
        if (o < length) CopyBlock(source + length - Block, dest + length - Block);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyBlock(byte* source, byte* dest)
    {
        var a = Vector256.Load(source);
        var b = Vector256.Load(source + 32);
        var c = Vector256.Load(source + 64);
        var d = Vector256.Load(source + 96);
        Vector256.Store(a, dest);
        Vector256.Store(b, dest + 32);
        Vector256.Store(c, dest + 64);
        Vector256.Store(d, dest + 96);
    }
}
