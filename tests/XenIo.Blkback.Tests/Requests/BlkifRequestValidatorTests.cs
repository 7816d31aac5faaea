using System.Buffers.Binary;
using System.Runtime.InteropServices;
using XenIo.Blkback.Requests;
using XenIo.Hypervisor.Abi;
using Xunit;

namespace XenIo.Blkback.Tests.Requests;

public class BlkifRequestValidatorTests
{
    // 1 MiB disk: 2048 sectors of 512 bytes.
    private static readonly DiskGeometry Disk = new(2048, DiscardEnabled: true);

    /// <summary>A ring slot as a guest writes it: op, nr_segments, handle, id, sector, then (gref, first, last) triples.</summary>
    internal static byte[] Slot(byte op, byte nseg, ulong sector, params (uint gref, byte first, byte last)[] segs)
    {
        var b = new byte[BlkifLimits.RequestSlotSize];
        b[0] = op;
        b[1] = nseg;
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(2), 7);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(8), 0xABCD_0000_0000_1234);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(16), sector);
        for (int i = 0; i < segs.Length; i++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(24 + 8 * i), segs[i].gref);
            b[24 + 8 * i + 4] = segs[i].first;
            b[24 + 8 * i + 5] = segs[i].last;
        }
        return b;
    }

    private static short Run(byte[] slot, DiskGeometry disk, out BlkRequest r, BlkSegment[]? segs = null)
    {
        var copy = BlkifRequestValidator.CopySlot(slot);
        return BlkifRequestValidator.Validate(copy, disk, segs ?? new BlkSegment[11], out r);
    }

    [Fact]
    public void Abi_layout_matches_blkif_h()
    {
        Assert.Equal(112, Marshal.SizeOf<BlkifRequest>());
        Assert.Equal(32, Marshal.SizeOf<BlkifRequestDiscard>());
        Assert.Equal(64, Marshal.SizeOf<BlkifRequestIndirect>());
        Assert.Equal(16, Marshal.SizeOf<BlkifResponse>());
    }

    [Fact]
    public void Read_of_two_segments_gives_offset_length_and_segments()
    {
        var segs = new BlkSegment[11];
        var slot = Slot(0, 2, 100, (9, 0, 7), (10, 2, 3));
        Assert.Equal(BlkifStatus.Okay, Run(slot, Disk, out var r, segs));
        Assert.Equal(BlkIoKind.Read, r.Kind);
        Assert.Equal(0xABCD_0000_0000_1234UL, r.Id);
        Assert.Equal(100UL * 512, r.Offset);
        Assert.Equal((8UL + 2) * 512, r.Length);
        Assert.Equal(2, r.SegmentCount);
        Assert.Equal(new BlkSegment(9, 0, 7), segs[0]);
        Assert.Equal(new BlkSegment(10, 2, 3), segs[1]);
        Assert.Equal(1024, segs[1].PageOffset);
        Assert.Equal(1024, segs[1].Length);
    }

    // op, nseg, sector, first, last, expected status
    [Theory]
    [InlineData(0, 1, 0, 0, 7, 0)]              // plain read
    [InlineData(1, 1, 2040, 0, 7, 0)]           // write of the last page
    [InlineData(1, 1, 2041, 0, 7, -1)]          // one sector past the end
    [InlineData(0, 0, 0, 0, 0, -1)]             // read with no segments
    [InlineData(1, 12, 0, 0, 7, -1)]            // 12 segments
    [InlineData(1, 255, 0, 0, 7, -1)]
    [InlineData(0, 1, 0, 3, 2, -1)]             // first > last
    [InlineData(0, 1, 0, 0, 8, -1)]             // last_sect 8 is past the page
    [InlineData(0, 1, 0, 255, 255, -1)]
    [InlineData(0, 1, 2048, 0, 0, -1)]          // starts at the end
    [InlineData(0, 1, 0xFFFF_FFFF_FFFF_FFFF, 0, 7, -1)] // sector + count overflows
    [InlineData(0, 1, 0x007F_FFFF_FFFF_FFFF, 0, 7, -1)] // byte offset would overflow
    [InlineData(3, 0, 0, 0, 0, 0)]              // flush without data
    [InlineData(3, 0, 0xFFFF_FFFF_FFFF_FFFF, 0, 0, 0)] // flush without data names no range
    [InlineData(2, 0, 0, 0, 0, 0)]              // barrier without data
    [InlineData(3, 1, 8, 0, 7, 0)]              // flush with data
    [InlineData(4, 1, 0, 0, 7, -2)]             // reserved op
    [InlineData(7, 1, 0, 0, 7, -2)]             // unknown op
    [InlineData(255, 0, 0, 0, 0, -2)]
    public void Table(byte op, byte nseg, ulong sector, byte first, byte last, short expected)
    {
        var segs = Enumerable.Repeat(((uint)9, first, last), Math.Min((int)nseg, 11)).ToArray();
        Assert.Equal(expected, Run(Slot(op, nseg, sector, segs), Disk, out _));
    }

    [Fact]
    public void Byte_level_slot_is_read_little_endian()
    {
        byte[] slot =
        [
            1, 1, 0, 0, 0, 0, 0, 0,            // WRITE, 1 segment, handle 0, pad
            0x44, 0x33, 0x22, 0x11, 0, 0, 0, 0, // id
            0x10, 0, 0, 0, 0, 0, 0, 0,          // sector 16
            0x2A, 0, 0, 0, 1, 6, 0, 0,          // gref 42, sectors 1..6
            .. new byte[112 - 32],
        ];
        var segs = new BlkSegment[11];
        Assert.Equal(BlkifStatus.Okay, Run(slot, Disk, out var r, segs));
        Assert.Equal(0x11223344UL, r.Id);
        Assert.Equal(BlkIoKind.Write, r.Kind);
        Assert.Equal(16UL * 512, r.Offset);
        Assert.Equal(6UL * 512, r.Length);
        Assert.Equal(new BlkSegment(42, 1, 6), segs[0]);
    }

    [Fact]
    public void Read_only_disk_refuses_writes_and_barriers_but_reads_and_flushes()
    {
        var ro = Disk with { ReadOnly = true };
        Assert.Equal(BlkifStatus.Error, Run(Slot(1, 1, 0, (9, 0, 7)), ro, out _));
        Assert.Equal(BlkifStatus.Error, Run(Slot(2, 0, 0), ro, out _));
        Assert.Equal(BlkifStatus.Error, Run(Slot(3, 1, 0, (9, 0, 7)), ro, out _));
        Assert.Equal(BlkifStatus.Okay, Run(Slot(0, 1, 0, (9, 0, 7)), ro, out _));
        Assert.Equal(BlkifStatus.Okay, Run(Slot(3, 0, 0), ro, out _));
    }

    [Theory]
    [InlineData(0, 0, 7, 0)]   // one whole 4 KiB block
    [InlineData(8, 0, 7, 0)]
    [InlineData(4, 0, 7, -1)]  // start not on a 4 KiB block
    [InlineData(0, 0, 3, -1)]  // half a block
    [InlineData(0, 1, 7, -1)]  // not at an aligned page offset
    public void Four_KiB_sectors_need_whole_aligned_blocks(ulong sector, byte first, byte last, short expected)
    {
        var disk = Disk with { SectorSize = 4096 };
        Assert.Equal(expected, Run(Slot(0, 1, sector, (9, first, last)), disk, out _));
    }

    private static byte[] DiscardSlot(ulong sector, ulong count, byte flag = 0)
    {
        var b = Slot(5, flag, sector);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(24), count);
        return b;
    }

    [Theory]
    [InlineData(0, 2048, 0, true, 0)]
    [InlineData(100, 8, 0, true, 0)]
    [InlineData(2048, 0, 0, true, 0)]
    [InlineData(2047, 2, 0, true, -1)]
    [InlineData(1, 0xFFFF_FFFF_FFFF_FFFF, 0, true, -1)]
    [InlineData(0, 8, 0, false, -2)]   // discard not enabled
    [InlineData(0, 8, 1, true, -2)]    // secure discard not offered
    [InlineData(0, 8, 2, true, -1)]    // unknown flag bit
    public void Discard(ulong sector, ulong count, byte flag, bool enabled, short expected)
    {
        var disk = Disk with { DiscardEnabled = enabled };
        Assert.Equal(expected, Run(DiscardSlot(sector, count, flag), disk, out var r));
        if (expected == 0)
        {
            Assert.Equal(BlkIoKind.Discard, r.Kind);
            Assert.Equal(sector * 512, r.Offset);
            Assert.Equal(count * 512, r.Length);
        }
    }

    [Fact]
    public void Discard_on_read_only_disk_fails()
    {
        Assert.Equal(BlkifStatus.Error, Run(DiscardSlot(0, 8), Disk with { ReadOnly = true }, out _));
    }

    private static byte[] IndirectSlot(byte indirectOp, ushort nseg, ulong sector, params uint[] grefs)
    {
        var b = Slot(6, indirectOp, sector);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(2), nseg);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(24), 3);
        for (int i = 0; i < grefs.Length; i++) BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(28 + 4 * i), grefs[i]);
        return b;
    }

    [Theory]
    [InlineData(0, 1, 0)]
    [InlineData(1, 256, 0)]
    [InlineData(0, 0, -1)]
    [InlineData(0, 257, -1)]
    [InlineData(0, 4096, -1)]
    [InlineData(2, 8, -1)]     // indirect barrier
    [InlineData(3, 8, -1)]     // indirect flush
    [InlineData(6, 8, -1)]     // indirect indirect
    [InlineData(5, 8, -1)]
    public void Indirect_header(byte indirectOp, ushort nseg, short expected)
    {
        var copy = BlkifRequestValidator.CopySlot(IndirectSlot(indirectOp, nseg, 0, 77));
        var status = BlkifRequestValidator.ValidateIndirectHeader(BlkifRequestValidator.AsIndirect(copy), Disk, out var plan);
        Assert.Equal(expected, status);
        if (expected == 0) Assert.Equal(1, plan.IndirectPages);
        // Through the generic entry point an INDIRECT slot is never accepted without its pages.
        Assert.NotEqual(BlkifStatus.Okay, BlkifRequestValidator.Validate(copy, Disk, new BlkSegment[11], out _));
    }

    [Fact]
    public void Indirect_pages_count_is_ceil_of_segments_over_512()
    {
        var big = Disk with { MaxIndirectSegments = 4096, Sectors = 1 << 20 };
        var copy = BlkifRequestValidator.AsIndirect(BlkifRequestValidator.CopySlot(IndirectSlot(0, 513, 0)));
        Assert.Equal(0, BlkifRequestValidator.ValidateIndirectHeader(copy, big, out var plan));
        Assert.Equal(2, plan.IndirectPages);
        copy = BlkifRequestValidator.AsIndirect(BlkifRequestValidator.CopySlot(IndirectSlot(0, 4096, 0)));
        Assert.Equal(0, BlkifRequestValidator.ValidateIndirectHeader(copy, big, out plan));
        Assert.Equal(8, plan.IndirectPages);
    }

    [Fact]
    public void Indirect_segments_are_checked_like_direct_ones()
    {
        var copy = BlkifRequestValidator.AsIndirect(BlkifRequestValidator.CopySlot(IndirectSlot(1, 3, 16, 77)));
        Assert.Equal(0, BlkifRequestValidator.ValidateIndirectHeader(copy, Disk, out var plan));
        var page = new BlkifRequestSegment[]
        {
            new() { Gref = 20, FirstSect = 0, LastSect = 7 },
            new() { Gref = 21, FirstSect = 0, LastSect = 7 },
            new() { Gref = 22, FirstSect = 0, LastSect = 3 },
        };
        var segs = new BlkSegment[256];
        Assert.Equal(0, BlkifRequestValidator.ValidateIndirectSegments(plan, page, Disk, segs, out var r));
        Assert.Equal(BlkifOperation.Write, r.ResponseOperation);
        Assert.Equal(BlkIoKind.Write, r.Kind);
        Assert.Equal(16UL * 512, r.Offset);
        Assert.Equal(20UL * 512, r.Length);
        Assert.Equal(3, r.SegmentCount);

        page[1].FirstSect = 5;
        page[1].LastSect = 4;
        Assert.Equal(BlkifStatus.Error, BlkifRequestValidator.ValidateIndirectSegments(plan, page, Disk, segs, out _));
        page[1] = new() { Gref = 21, FirstSect = 0, LastSect = 9 };
        Assert.Equal(BlkifStatus.Error, BlkifRequestValidator.ValidateIndirectSegments(plan, page, Disk, segs, out _));
        // A segment count different from the header's is refused.
        Assert.Equal(BlkifStatus.Error, BlkifRequestValidator.ValidateIndirectSegments(plan, page.AsSpan(0, 2), Disk, segs, out _));
        // Past the end of the disk through many segments.
        var endCopy = BlkifRequestValidator.AsIndirect(BlkifRequestValidator.CopySlot(IndirectSlot(0, 256, 2040)));
        Assert.Equal(0, BlkifRequestValidator.ValidateIndirectHeader(endCopy, Disk, out var endPlan));
        var full = Enumerable.Repeat(new BlkifRequestSegment { Gref = 30, FirstSect = 0, LastSect = 7 }, 256).ToArray();
        Assert.Equal(BlkifStatus.Error, BlkifRequestValidator.ValidateIndirectSegments(endPlan, full, Disk, segs, out _));
    }

    [Fact]
    public void Indirect_segments_copied_from_page_bytes()
    {
        var pageBytes = new byte[4096];
        for (int i = 0; i < 512; i++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(pageBytes.AsSpan(8 * i), (uint)(1000 + i));
            pageBytes[8 * i + 4] = 0;
            pageBytes[8 * i + 5] = 7;
        }
        var copied = new BlkifRequestSegment[4];
        BlkifRequestValidator.CopyIndirectSegments(pageBytes, 508, copied);
        Assert.Equal(1508u, copied[0].Gref);
        Assert.Equal(1511u, copied[3].Gref);
        Assert.Equal(7, copied[3].LastSect);
        Assert.Throws<ArgumentOutOfRangeException>(() => BlkifRequestValidator.CopyIndirectSegments(pageBytes, 509, copied));
    }

    [Fact]
    public void Indirect_write_on_read_only_disk_fails_at_the_header()
    {
        var copy = BlkifRequestValidator.AsIndirect(BlkifRequestValidator.CopySlot(IndirectSlot(1, 3, 0, 77)));
        Assert.Equal(BlkifStatus.Error, BlkifRequestValidator.ValidateIndirectHeader(copy, Disk with { ReadOnly = true }, out _));
    }

    [Fact]
    public void Responses_have_every_padding_byte_zero()
    {
        var r = BlkifResponse.Create(0x0102030405060708, BlkifOperation.Write, BlkifStatus.Error);
        var bytes = MemoryMarshal.AsBytes(new ReadOnlySpan<BlkifResponse>(in r)).ToArray();
        Assert.Equal(new byte[] { 8, 7, 6, 5, 4, 3, 2, 1, 1, 0, 0xFF, 0xFF, 0, 0, 0, 0 }, bytes);

        // An error response to an INDIRECT request carries indirect_op, as blkfront expects.
        var copy = BlkifRequestValidator.CopySlot(IndirectSlot(1, 0, 0));
        var e = BlkifRequestValidator.ErrorResponse(copy, BlkifStatus.Error);
        Assert.Equal(BlkifOperation.Write, e.Operation);
        Assert.Equal(0xABCD_0000_0000_1234UL, e.Id);
    }

    [Fact]
    public void Copy_is_taken_once_and_later_slot_changes_do_not_matter()
    {
        var slot = Slot(0, 1, 0, (9, 0, 7));
        var copy = BlkifRequestValidator.CopySlot(slot);
        slot[1] = 200; // the guest rewrites the slot after the copy (XSA-155)
        slot[29] = 200;
        Assert.Equal(BlkifStatus.Okay, BlkifRequestValidator.Validate(copy, Disk, new BlkSegment[11], out var r));
        Assert.Equal(4096UL, r.Length);
    }
}
