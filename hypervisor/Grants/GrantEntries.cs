using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Memory;

namespace XenIo.Hypervisor.Grants;

/// <summary>
/// Raw access to the v1 grant entries in frames 0..N-1 of a domain's memory. Entries are shared
/// with the guest, so every read is a single volatile load and every update a compare-and-swap
/// (the flags+domid pair is one 32-bit word, <c>union grant_combo</c> in Xen).
/// </summary>
internal static unsafe class GrantEntries
{
    public const uint InUse = (uint)(GrantFlags.Reading | GrantFlags.Writing);

    /// <summary>The flags+domid word of entry <paramref name="gref"/>; the caller has checked the ref.</summary>
    public static uint* Combo(DomainMemory memory, uint gref) => Combo(memory.Base, gref);

    /// <summary>The same, for a caller that holds the table's address (frame 0 of the domain's memory) across a loop.</summary>
    public static uint* Combo(byte* table, uint gref) => (uint*)(table + ((nint)gref << 3));

    public static uint* Frame(DomainMemory memory, uint gref) => Frame(memory.Base, gref);

    public static uint* Frame(byte* table, uint gref) => (uint*)(table + ((nint)gref << 3) + GrantEntryV1.FrameOffset);

    public static GrantFlags FlagsOf(uint combo) => (GrantFlags)(ushort)combo;

    public static ushort DomidOf(uint combo) => (ushort)(combo >> 16);

    /// <summary>Clears GTF_reading/GTF_writing bits atomically without touching the rest of the word.</summary>
    public static void ClearFlags(uint* combo, GrantFlags flags) => Interlocked.And(ref *combo, ~(uint)flags);

    public static uint EntriesIn(uint grantFrames) => grantFrames * GrantLimits.EntriesPerFrame;
}
