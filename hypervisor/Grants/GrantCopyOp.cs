using System.Runtime.InteropServices;
using XenIo.Hypervisor.Abi;

namespace XenIo.Hypervisor.Grants;

/// <summary>
/// One side of a grant copy (<c>struct gnttab_copy_ptr</c>): with the matching GNTCOPY_*_gref flag,
/// a grant <see cref="Ref"/> of foreign domain <see cref="Domid"/> and an <see cref="Offset"/> inside
/// that page; without it, <see cref="Domid"/> must be DOMID_SELF and <see cref="Offset"/> is an
/// offset into the caller's local buffer.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public struct GrantCopyPointer
{
    public uint Ref;
    public uint Offset;
    public ushort Domid;

    public static GrantCopyPointer Grant(ushort domid, uint gref, uint offset) => new() { Ref = gref, Offset = offset, Domid = domid };

    public static GrantCopyPointer Local(uint offset) => new() { Offset = offset, Domid = DomainIds.Self };
}

/// <summary>One <c>GNTTABOP_copy</c> operation: <see cref="Length"/> bytes from source to dest; <see cref="Status"/> is written back.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct GrantCopyOp
{
    public GrantCopyPointer Source;
    public GrantCopyPointer Dest;
    public ushort Length;
    public GrantCopyFlags Flags;
    public GrantStatus Status;

    /// <summary>Copy from a guest's grant into the local buffer.</summary>
    public static GrantCopyOp FromGrant(ushort domid, uint gref, uint offset, uint localOffset, ushort length) => new()
    {
        Source = GrantCopyPointer.Grant(domid, gref, offset),
        Dest = GrantCopyPointer.Local(localOffset),
        Length = length,
        Flags = GrantCopyFlags.SourceGref,
    };

    /// <summary>Copy from the local buffer into a guest's grant.</summary>
    public static GrantCopyOp ToGrant(uint localOffset, ushort domid, uint gref, uint offset, ushort length) => new()
    {
        Source = GrantCopyPointer.Local(localOffset),
        Dest = GrantCopyPointer.Grant(domid, gref, offset),
        Length = length,
        Flags = GrantCopyFlags.DestGref,
    };
}
