using System.Runtime.InteropServices;

namespace XenIo.Guest.Blkfront.Fuse;

// linux/fuse.h, protocol 7.38 (kernel 6.x). Only what a one-file disk server needs; the kernel's
// structs are copied field for field so MemoryMarshal can read and write them.

public enum FuseOpcode : uint
{
    Lookup = 1,
    Forget = 2,
    GetAttr = 3,
    SetAttr = 4,
    Open = 14,
    Read = 15,
    Write = 16,
    StatFs = 17,
    Release = 18,
    FSync = 20,
    GetXAttr = 22,
    ListXAttr = 23,
    Flush = 25,
    Init = 26,
    OpenDir = 27,
    ReadDir = 28,
    ReleaseDir = 29,
    FSyncDir = 30,
    Access = 34,
    Interrupt = 36,
    Destroy = 38,
    BatchForget = 42,
    FAllocate = 43,
}

public static class FuseConstants
{
    public const uint KernelVersion = 7;
    public const uint KernelMinorVersion = 38;
    public const ulong RootId = 1;

    /// <summary>The kernel refuses to read into a buffer smaller than this (FUSE_MIN_READ_BUFFER).</summary>
    public const int MinReadBuffer = 8192;

    // fuse_init flags
    public const uint AsyncRead = 1 << 0;
    public const uint BigWrites = 1 << 5;
    public const uint AsyncDio = 1 << 15;
    public const uint ParallelDirops = 1 << 18;
    public const uint MaxPages = 1 << 22;

    // fuse_open_out.open_flags
    public const uint FOpenDirectIo = 1 << 0;
    public const uint FOpenParallelDirectWrites = 1 << 6;

    // fuse_setattr_in.valid
    public const uint FAttrSize = 1 << 3;

    public const uint SIfDir = 0x4000;
    public const uint SIfReg = 0x8000;
}

[StructLayout(LayoutKind.Sequential, Size = 40)]
public struct FuseInHeader
{
    public uint Len;
    public FuseOpcode Opcode;
    public ulong Unique;
    public ulong NodeId;
    public uint Uid;
    public uint Gid;
    public uint Pid;
    public ushort TotalExtLen;
    public ushort Padding;
}

[StructLayout(LayoutKind.Sequential, Size = 16)]
public struct FuseOutHeader
{
    public uint Len;
    public int Error;
    public ulong Unique;
}

/// <summary>The first 16 bytes of fuse_init_in: all a kernel older than 7.36 sends.</summary>
[StructLayout(LayoutKind.Sequential, Size = 16)]
public struct FuseInitIn
{
    public uint Major;
    public uint Minor;
    public uint MaxReadahead;
    public uint Flags;
}

[StructLayout(LayoutKind.Sequential, Size = 64)]
public struct FuseInitOut
{
    public uint Major;
    public uint Minor;
    public uint MaxReadahead;
    public uint Flags;
    public ushort MaxBackground;
    public ushort CongestionThreshold;
    public uint MaxWrite;
    public uint TimeGran;
    public ushort MaxPages;
    public ushort MapAlignment;
    public uint Flags2;
}

[StructLayout(LayoutKind.Sequential, Size = 88)]
public struct FuseAttr
{
    public ulong Ino;
    public ulong Size;
    public ulong Blocks;
    public ulong ATime;
    public ulong MTime;
    public ulong CTime;
    public uint ATimeNsec;
    public uint MTimeNsec;
    public uint CTimeNsec;
    public uint Mode;
    public uint NLink;
    public uint Uid;
    public uint Gid;
    public uint RDev;
    public uint BlkSize;
    public uint Flags;
}

[StructLayout(LayoutKind.Sequential, Size = 128)]
public struct FuseEntryOut
{
    public ulong NodeId;
    public ulong Generation;
    public ulong EntryValid;
    public ulong AttrValid;
    public uint EntryValidNsec;
    public uint AttrValidNsec;
    public FuseAttr Attr;
}

[StructLayout(LayoutKind.Sequential, Size = 104)]
public struct FuseAttrOut
{
    public ulong AttrValid;
    public uint AttrValidNsec;
    public uint Dummy;
    public FuseAttr Attr;
}

[StructLayout(LayoutKind.Sequential, Size = 8)]
public struct FuseOpenIn
{
    public uint Flags;
    public uint OpenFlags;
}

[StructLayout(LayoutKind.Sequential, Size = 16)]
public struct FuseOpenOut
{
    public ulong Fh;
    public uint OpenFlags;
    public uint Padding;
}

/// <summary>fuse_read_in and fuse_write_in share this 40-byte layout.</summary>
[StructLayout(LayoutKind.Sequential, Size = 40)]
public struct FuseIoIn
{
    public ulong Fh;
    public ulong Offset;
    public uint Size;
    public uint IoFlags;
    public ulong LockOwner;
    public uint Flags;
    public uint Padding;
}

[StructLayout(LayoutKind.Sequential, Size = 8)]
public struct FuseWriteOut
{
    public uint Size;
    public uint Padding;
}

[StructLayout(LayoutKind.Sequential, Size = 80)]
public struct FuseStatFsOut
{
    public ulong Blocks;
    public ulong BFree;
    public ulong BAvail;
    public ulong Files;
    public ulong FFree;
    public uint BSize;
    public uint NameLen;
    public uint FrSize;
}

[StructLayout(LayoutKind.Sequential, Size = 32)]
public struct FuseFAllocateIn
{
    public ulong Fh;
    public ulong Offset;
    public ulong Length;
    public uint Mode;
    public uint Padding;
}

[StructLayout(LayoutKind.Sequential, Size = 16)]
public struct FuseFSyncIn
{
    public ulong Fh;
    public uint FSyncFlags;
    public uint Padding;
}

[StructLayout(LayoutKind.Sequential, Size = 88)]
public struct FuseSetAttrIn
{
    public uint Valid;
    public uint Padding;
    public ulong Fh;
    public ulong Size;
}
