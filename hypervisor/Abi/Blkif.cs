using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace XenIo.Hypervisor.Abi;

// io/blkif.h: the Xen virtual block device ring. Every ring slot is the 112-byte union of the
// request kinds below; the response is 16 bytes.

/// <summary><c>struct blkif_request_segment</c>, 8 bytes: sectors first_sect..last_sect (inclusive) of one granted page.</summary>
[StructLayout(LayoutKind.Explicit, Size = 8)]
public struct BlkifRequestSegment
{
    [FieldOffset(0)] public uint Gref;
    [FieldOffset(4)] public byte FirstSect;
    [FieldOffset(5)] public byte LastSect;
}

[InlineArray(BlkifLimits.MaxSegmentsPerRequest)]
public struct BlkifSegments
{
    private BlkifRequestSegment _s0;
}

/// <summary><c>struct blkif_request</c>, 112 bytes: READ, WRITE, WRITE_BARRIER, FLUSH_DISKCACHE.</summary>
[StructLayout(LayoutKind.Explicit, Size = 112)]
public struct BlkifRequest
{
    [FieldOffset(0)] public BlkifOperation Operation;
    [FieldOffset(1)] public byte NrSegments;
    [FieldOffset(2)] public ushort Handle;
    [FieldOffset(8)] public ulong Id;
    [FieldOffset(16)] public ulong SectorNumber;
    [FieldOffset(24)] public BlkifSegments Seg;

    public const int SegOffset = 24;
}

/// <summary><c>struct blkif_request_discard</c>, 32 bytes (in a 112-byte ring slot).</summary>
[StructLayout(LayoutKind.Explicit, Size = 32)]
public struct BlkifRequestDiscard
{
    [FieldOffset(0)] public BlkifOperation Operation;
    [FieldOffset(1)] public byte Flag;
    [FieldOffset(2)] public ushort Handle;
    [FieldOffset(8)] public ulong Id;
    [FieldOffset(16)] public ulong SectorNumber;
    [FieldOffset(24)] public ulong NrSectors;

    public const byte FlagSecure = 1;
}

[InlineArray(BlkifLimits.MaxIndirectPagesPerRequest)]
public struct BlkifIndirectGrefs
{
    private uint _g0;
}

/// <summary><c>struct blkif_request_indirect</c>, 64 bytes on x86_64 (in a 112-byte ring slot).</summary>
[StructLayout(LayoutKind.Explicit, Size = 64)]
public struct BlkifRequestIndirect
{
    [FieldOffset(0)] public BlkifOperation Operation;
    [FieldOffset(1)] public BlkifOperation IndirectOp;
    [FieldOffset(2)] public ushort NrSegments;
    [FieldOffset(8)] public ulong Id;
    [FieldOffset(16)] public ulong SectorNumber;
    [FieldOffset(24)] public ushort Handle;
    [FieldOffset(28)] public BlkifIndirectGrefs IndirectGrefs;

    public const int IndirectGrefsOffset = 28;
}

/// <summary>
/// <c>struct blkif_response</c>, 16 bytes. Byte 9 and bytes 12..15 are padding: a backend must
/// write them as zero (XSA-216), so build responses with <see cref="Create"/>.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 16)]
public struct BlkifResponse
{
    [FieldOffset(0)] public ulong Id;
    [FieldOffset(8)] public BlkifOperation Operation;
    [FieldOffset(9)] private readonly byte _pad0;
    [FieldOffset(10)] public short Status;
    [FieldOffset(12)] private readonly uint _pad1;

    /// <summary>A response with every padding byte zero.</summary>
    public static BlkifResponse Create(ulong id, BlkifOperation operation, short status) =>
        new() { Id = id, Operation = operation, Status = status };
}

public enum BlkifOperation : byte
{
    Read = 0,
    Write = 1,
    WriteBarrier = 2,
    FlushDiskCache = 3,
    Reserved1 = 4,
    Discard = 5,
    Indirect = 6,
}

/// <summary><c>BLKIF_RSP_*</c>.</summary>
public static class BlkifStatus
{
    public const short EOpNotSupp = -2;
    public const short Error = -1;
    public const short Okay = 0;
}

public static class BlkifLimits
{
    /// <summary>Size of one ring slot (the union of every request kind).</summary>
    public const int RequestSlotSize = 112;
    public const int MaxSegmentsPerRequest = 11;
    public const int MaxIndirectPagesPerRequest = 8;
    /// <summary><c>BLKIF_SEGS_PER_INDIRECT_FRAME</c>: 4096 / sizeof(blkif_request_segment).</summary>
    public const int SegmentsPerIndirectFrame = 512;
    public const int SectorSize = 512;
    public const int SectorsPerPage = 8;
    public const int RingSlots = 32;
}
