using System.Runtime.InteropServices;

namespace XenIo.Hypervisor.Abi;

/// <summary>
/// <c>struct grant_entry_v1</c> (grant_table.h), 8 bytes. The guest writes <see cref="Domid"/> and
/// <see cref="Frame"/> before <see cref="Flags"/>; the hypervisor sets GTF_reading/GTF_writing while
/// a grant is in use, with an atomic compare-and-swap on the flags+domid word, as Xen does.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 8)]
public struct GrantEntryV1
{
    [FieldOffset(0)] public GrantFlags Flags;
    [FieldOffset(2)] public ushort Domid;
    [FieldOffset(4)] public uint Frame;

    public const int FlagsOffset = 0;
    public const int DomidOffset = 2;
    public const int FrameOffset = 4;
}

/// <summary><c>GTF_*</c>: the type in bits 0..1 and the flags above it.</summary>
[Flags]
public enum GrantFlags : ushort
{
    Invalid = 0,
    PermitAccess = 1,
    AcceptTransfer = 2,
    Transitive = 3,
    TypeMask = 3,
    Readonly = 1 << 2,
    Reading = 1 << 3,
    Writing = 1 << 4,
    PwtBit = 1 << 5,
    PcdBit = 1 << 6,
    PatBit = 1 << 7,
    SubPage = 1 << 8,
}

/// <summary><c>GNTST_*</c>: the status of one grant operation.</summary>
public enum GrantStatus : short
{
    Okay = 0,
    GeneralError = -1,
    BadDomain = -2,
    BadGntref = -3,
    BadHandle = -4,
    BadVirtAddr = -5,
    BadDevAddr = -6,
    NoDeviceSpace = -7,
    PermissionDenied = -8,
    BadPage = -9,
    BadCopyArg = -10,
    AddressTooBig = -11,
    Eagain = -12,
    NoSpace = -13,
}

public static class GrantLimits
{
    /// <summary><c>GNTTAB_NR_RESERVED_ENTRIES</c>: refs 0..7 are the toolstack's.</summary>
    public const int ReservedEntries = 8;
    public const uint ConsoleRef = 0;
    public const uint XenstoreRef = 1;
    public const int EntriesPerFrame = 4096 / 8;
    /// <summary>libxl's default <c>max_grant_frames</c>.</summary>
    public const int DefaultMaxGrantFrames = 32;
}

/// <summary><c>GNTCOPY_*</c> flags of a <c>gnttab_copy</c> operation.</summary>
[Flags]
public enum GrantCopyFlags : ushort
{
    None = 0,
    SourceGref = 1 << 0,
    DestGref = 1 << 1,
    HeadPad = 1 << 2,
}
