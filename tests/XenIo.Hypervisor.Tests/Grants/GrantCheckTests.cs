using FsCheck.Xunit;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Grants;
using Xunit;

namespace XenIo.Hypervisor.Tests.Grants;

/// <summary>Every check Xen's grant_table.c makes, each against hostile entries and operations.</summary>
public class GrantCheckTests
{
    private const ushort Guest = GrantTestDomain.GuestDomid;
    private const uint FirstFreeFrame = GrantTestDomain.GrantFrames;

    private static GrantStatus CopyFrom(GrantTestDomain d, uint gref, uint offset, ushort length, Span<byte> local)
    {
        Span<GrantCopyOp> op = [GrantCopyOp.FromGrant(Guest, gref, offset, 0, length)];
        d.Backend.Copy(op, local);
        return op[0].Status;
    }

    private static GrantStatus CopyTo(GrantTestDomain d, uint gref, uint offset, ushort length, Span<byte> local)
    {
        Span<GrantCopyOp> op = [GrantCopyOp.ToGrant(0, Guest, gref, offset, length)];
        d.Backend.Copy(op, local);
        return op[0].Status;
    }

    private static bool InUse(GrantTestDomain d, uint gref) => (d.Table.Read(gref).Flags & (GrantFlags.Reading | GrantFlags.Writing)) != 0;

    [Fact]
    public void Copy_moves_bytes_both_ways_and_leaves_the_entry_unpinned()
    {
        using var d = new GrantTestDomain();
        uint frame = FirstFreeFrame + 3;
        uint gref = d.Table.GrantAccess(0, frame, readOnly: false);
        d.Guest.Page(frame)[100..200].Fill(0x5A);
        var local = new byte[4096];
        Assert.Equal(GrantStatus.Okay, CopyFrom(d, gref, 100, 100, local));
        Assert.All(local[..100], b => Assert.Equal(0x5A, b));
        local.AsSpan(0, 50).Fill(0xC3);
        Assert.Equal(GrantStatus.Okay, CopyTo(d, gref, 4046, 50, local));
        Assert.All(d.Guest.Page(frame)[4046..].ToArray(), b => Assert.Equal(0xC3, b));
        Assert.False(InUse(d, gref));
        Assert.True(d.Table.EndAccess(gref));
    }

    [Property(MaxTest = 200)]
    public void Grant_for_another_domain_is_refused(ushort domid)
    {
        if (domid == 0) domid = 1;
        using var d = new GrantTestDomain();
        uint gref = d.Table.GrantAccess(domid, FirstFreeFrame, readOnly: false);
        var local = new byte[4096];
        Assert.Equal(GrantStatus.GeneralError, CopyFrom(d, gref, 0, 16, local));
        Assert.Equal(GrantStatus.GeneralError, CopyTo(d, gref, 0, 16, local));
        Assert.Equal(GrantStatus.GeneralError, d.Backend.Map(gref, readOnly: true, out _));
        Assert.False(InUse(d, gref));
    }

    [Property(MaxTest = 200)]
    public void Ref_beyond_the_table_is_bad_gntref(uint excess)
    {
        using var d = new GrantTestDomain();
        uint gref = d.Backend.EntryCount + excess % (uint.MaxValue - d.Backend.EntryCount);
        var local = new byte[4096];
        Assert.Equal(GrantStatus.BadGntref, CopyFrom(d, gref, 0, 1, local));
        Assert.Equal(GrantStatus.BadGntref, CopyTo(d, gref, 0, 1, local));
        Assert.Equal(GrantStatus.BadGntref, d.Backend.Map(gref, readOnly: false, out _));
    }

    [Property(MaxTest = 200)]
    public void Frame_outside_the_domain_or_in_the_grant_table_is_bad_page(uint frameSeed, bool inTable)
    {
        using var d = new GrantTestDomain();
        uint frame = inTable ? frameSeed % GrantTestDomain.GrantFrames : GrantTestDomain.Frames + frameSeed % (uint.MaxValue - GrantTestDomain.Frames);
        uint gref = d.Table.GrantAccess(0, FirstFreeFrame, readOnly: false);
        d.Table.WriteRaw(gref, GrantFlags.PermitAccess, 0, frame);
        var local = new byte[4096];
        Assert.Equal(GrantStatus.BadPage, CopyFrom(d, gref, 0, 8, local));
        Assert.Equal(GrantStatus.BadPage, CopyTo(d, gref, 0, 8, local));
        Assert.Equal(GrantStatus.BadPage, d.Backend.Map(gref, readOnly: false, out _));
        Assert.False(InUse(d, gref)); // the pin taken before the frame check is undone
    }

    [Property(MaxTest = 100)]
    public void Write_through_a_read_only_grant_is_refused(ushort offset, byte length)
    {
        using var d = new GrantTestDomain();
        uint frame = FirstFreeFrame + 1;
        uint gref = d.Table.GrantAccess(0, frame, readOnly: true);
        uint off = offset % 4000u;
        var local = new byte[4096];
        Assert.Equal(GrantStatus.GeneralError, CopyTo(d, gref, off, length, local));
        Assert.Equal(GrantStatus.GeneralError, d.Backend.Map(gref, readOnly: false, out _));
        Assert.Equal(GrantStatus.Okay, CopyFrom(d, gref, off, length, local));
        Assert.Equal(GrantStatus.Okay, d.Backend.Map(gref, readOnly: true, out var mapping));
        Assert.Throws<InvalidOperationException>(() => mapping.WritablePage.Length);
        Assert.Equal(GrantStatus.Okay, d.Backend.Unmap(mapping));
        Assert.True(d.Table.EndAccess(gref));
    }

    [Property(MaxTest = 300)]
    public void Offset_plus_length_past_the_page_is_bad_copy_arg(uint offset, ushort length)
    {
        if ((ulong)offset + length <= 4096) offset = 4096 - (uint)length / 2 + 1;
        using var d = new GrantTestDomain();
        uint gref = d.Table.GrantAccess(0, FirstFreeFrame, readOnly: false);
        var local = new byte[65536 + 8192];
        Assert.Equal(GrantStatus.BadCopyArg, CopyFrom(d, gref, offset, length, local));
        Assert.Equal(GrantStatus.BadCopyArg, CopyTo(d, gref, offset, length, local));
        Assert.False(InUse(d, gref));
    }

    [Property(MaxTest = 100)]
    public void Local_buffer_overrun_is_bad_copy_arg(ushort localOffset, ushort length)
    {
        using var d = new GrantTestDomain();
        uint gref = d.Table.GrantAccess(0, FirstFreeFrame, readOnly: false);
        var local = new byte[64];
        if (localOffset + length <= local.Length) localOffset = 64;
        ushort len = (ushort)Math.Min((int)length, 4096);
        if (localOffset + len <= local.Length) len = 1;
        Span<GrantCopyOp> op = [GrantCopyOp.FromGrant(Guest, gref, 0, localOffset, len)];
        d.Backend.Copy(op, local);
        Assert.Equal(GrantStatus.BadCopyArg, op[0].Status);
    }

    [Property(MaxTest = 50)]
    public void Access_cannot_end_while_in_use(byte readers, bool writable)
    {
        using var d = new GrantTestDomain();
        uint gref = d.Table.GrantAccess(0, FirstFreeFrame + 2, readOnly: false);
        int count = 1 + readers % 5;
        var handles = new List<GrantMapping>();
        for (int i = 0; i < count; i++)
        {
            Assert.Equal(GrantStatus.Okay, d.Backend.Map(gref, readOnly: !(writable && i == 0), out var m));
            handles.Add(m);
        }
        Assert.Equal(writable, (d.Table.Read(gref).Flags & GrantFlags.Writing) != 0);
        foreach (var m in handles)
        {
            Assert.False(d.Table.EndAccess(gref));
            Assert.Equal(GrantFlags.PermitAccess, d.Table.Read(gref).Flags & GrantFlags.TypeMask);
            Assert.Equal(GrantStatus.Okay, d.Backend.Unmap(m));
        }
        Assert.Equal(GrantStatus.BadHandle, d.Backend.Unmap(handles[0]));
        Assert.True(d.Table.EndAccess(gref));
        Assert.Equal(GrantFlags.Invalid, d.Table.Read(gref).Flags);
    }

    [Fact]
    public void Access_ended_before_the_backend_pins_it_is_refused()
    {
        using var d = new GrantTestDomain();
        uint gref = d.Table.GrantAccess(0, FirstFreeFrame, readOnly: false);
        // The guest ends access after the backend read the entry but before its CAS.
        d.Backend.BeforeCompareExchange = r => Assert.True(d.Table.EndAccess(r));
        var local = new byte[4096];
        Assert.Equal(GrantStatus.GeneralError, CopyFrom(d, gref, 0, 64, local));
        d.Backend.BeforeCompareExchange = null;
        Assert.Equal(GrantFlags.Invalid, d.Table.Read(gref).Flags);
    }

    public enum Rewrite { OtherDomid, Invalid, Transitive, Readonly, SubPage }

    [Property(MaxTest = 200)]
    public void Entry_rewritten_between_check_and_use_is_checked_again(Rewrite rewrite, ushort otherDomid)
    {
        using var d = new GrantTestDomain();
        uint frame = FirstFreeFrame + 4;
        uint gref = d.Table.GrantAccess(0, frame, readOnly: false);
        bool once = false;
        d.Backend.BeforeCompareExchange = r =>
        {
            if (once) return;
            once = true;
            var (flags, domid) = rewrite switch
            {
                Rewrite.OtherDomid => (GrantFlags.PermitAccess, (ushort)(otherDomid == 0 ? 1 : otherDomid)),
                Rewrite.Invalid => (GrantFlags.Invalid, (ushort)0),
                Rewrite.Transitive => (GrantFlags.Transitive, (ushort)0),
                Rewrite.Readonly => (GrantFlags.PermitAccess | GrantFlags.Readonly, (ushort)0),
                _ => (GrantFlags.PermitAccess | GrantFlags.SubPage, (ushort)0),
            };
            d.Table.WriteRaw(r, flags, domid, frame);
        };
        if (rewrite == Rewrite.SubPage)
        {
            // A sub-page grant is still copyable but never mappable.
            Assert.Equal(GrantStatus.GeneralError, d.Backend.Map(gref, readOnly: true, out _));
        }
        else
        {
            var local = new byte[4096];
            Assert.Equal(GrantStatus.GeneralError, CopyTo(d, gref, 0, 32, local));
        }
        Assert.True(once);
        Assert.False(InUse(d, gref));
    }

    [Fact]
    public void Entry_rewritten_to_an_equally_valid_one_is_retried_and_used()
    {
        using var d = new GrantTestDomain();
        uint frame = FirstFreeFrame + 4;
        uint gref = d.Table.GrantAccess(0, frame, readOnly: false);
        int calls = 0;
        d.Backend.BeforeCompareExchange = r =>
        {
            if (calls++ == 0) d.Table.WriteRaw(r, GrantFlags.PermitAccess | GrantFlags.PwtBit, 0, frame);
        };
        var local = new byte[4096];
        Assert.Equal(GrantStatus.Okay, CopyFrom(d, gref, 0, 32, local));
        Assert.Equal(2, calls);
    }

    [Fact]
    public void Entry_that_never_stops_changing_is_given_up_on()
    {
        using var d = new GrantTestDomain();
        uint frame = FirstFreeFrame + 4;
        uint gref = d.Table.GrantAccess(0, frame, readOnly: false);
        int calls = 0;
        d.Backend.BeforeCompareExchange = r =>
            d.Table.WriteRaw(r, GrantFlags.PermitAccess | (calls++ % 2 == 0 ? GrantFlags.PwtBit : GrantFlags.PcdBit), 0, frame);
        var local = new byte[4096];
        Assert.Equal(GrantStatus.GeneralError, CopyFrom(d, gref, 0, 32, local));
        Assert.Equal(5, calls);
        Assert.False(InUse(d, gref));
    }

    [Fact]
    public void Copy_names_only_known_domains_and_local_memory_only_as_self()
    {
        using var d = new GrantTestDomain();
        uint gref = d.Table.GrantAccess(0, FirstFreeFrame, readOnly: false);
        var local = new byte[4096];
        Span<GrantCopyOp> ops =
        [
            GrantCopyOp.FromGrant(Guest + 1, gref, 0, 0, 8),
            new GrantCopyOp { Source = GrantCopyPointer.Local(0) with { Domid = Guest }, Dest = GrantCopyPointer.Grant(Guest, gref, 0), Length = 8, Flags = GrantCopyFlags.DestGref },
            new GrantCopyOp { Source = GrantCopyPointer.Grant(Guest, gref, 0), Dest = GrantCopyPointer.Local(0), Length = 8, Flags = GrantCopyFlags.SourceGref | GrantCopyFlags.HeadPad },
            GrantCopyOp.FromGrant(Guest, gref, 0, 0, 8),
        ];
        d.Backend.Copy(ops, local);
        Assert.Equal(GrantStatus.BadDomain, ops[0].Status);
        Assert.Equal(GrantStatus.PermissionDenied, ops[1].Status);
        Assert.Equal(GrantStatus.BadCopyArg, ops[2].Status);
        Assert.Equal(GrantStatus.Okay, ops[3].Status);
    }

    /// <summary>
    /// Random tables of hostile entries and random batches: each op's status is what a model of
    /// Xen's checks predicts, successful copies move exactly the right bytes, and nothing stays pinned.
    /// </summary>
    [Property(MaxTest = 100)]
    public void Random_hostile_batches_get_the_status_the_model_predicts(int seed)
    {
        var rng = new Random(seed);
        using var d = new GrantTestDomain();
        const int Entries = 64;
        var entries = new (GrantFlags Flags, ushort Domid, uint Frame)[Entries];
        for (uint f = FirstFreeFrame; f < GrantTestDomain.Frames; f++) rng.NextBytes(d.Guest.Page(f));
        for (uint r = 8; r < Entries; r++)
        {
            var type = rng.Next(10) switch { < 6 => GrantFlags.PermitAccess, 6 => GrantFlags.Invalid, 7 => GrantFlags.AcceptTransfer, _ => GrantFlags.Transitive };
            var flags = type | (rng.Next(3) == 0 ? GrantFlags.Readonly : 0);
            ushort domid = rng.Next(4) == 0 ? (ushort)rng.Next(1, 0x7FF0) : (ushort)0;
            uint frame = rng.Next(5) == 0 ? (uint)rng.Next(0, 200) : (uint)rng.Next((int)FirstFreeFrame, (int)GrantTestDomain.Frames);
            entries[r] = (flags, domid, frame);
            d.Table.WriteRaw(r, flags, domid, frame);
        }
        var local = new byte[16 * 4096];
        rng.NextBytes(local);
        var ops = new GrantCopyOp[16];
        var expected = new GrantStatus[16];
        for (int i = 0; i < ops.Length; i++)
        {
            uint gref = rng.Next(8) == 0 ? (uint)rng.Next(Entries, 5000) : (uint)rng.Next(8, Entries);
            uint offset = (uint)rng.Next(0, 4096);
            ushort length = (ushort)rng.Next(0, rng.Next(2) == 0 ? 4096 - (int)offset + 1 : 4097);
            bool toGuest = rng.Next(2) == 0;
            ops[i] = toGuest ? GrantCopyOp.ToGrant((uint)(i * 4096), Guest, gref, offset, length) : GrantCopyOp.FromGrant(Guest, gref, offset, (uint)(i * 4096), length);
            expected[i] = Model(gref, offset, length, write: toGuest);
        }
        // A model of the guest's memory and the local buffer, with each op the model accepts applied in order.
        var guestModel = new byte[GrantTestDomain.Frames * 4096];
        for (uint f = 0; f < GrantTestDomain.Frames; f++) d.Guest.Page(f).CopyTo(guestModel.AsSpan((int)f * 4096));
        var localModel = local.ToArray();
        for (int i = 0; i < ops.Length; i++)
        {
            if (expected[i] != GrantStatus.Okay) continue;
            bool fromGuest = (ops[i].Flags & GrantCopyFlags.SourceGref) != 0;
            var g = fromGuest ? ops[i].Source : ops[i].Dest;
            var guestBytes = guestModel.AsSpan((int)(entries[g.Ref].Frame * 4096 + g.Offset), ops[i].Length);
            var localBytes = localModel.AsSpan(i * 4096, ops[i].Length);
            if (fromGuest) guestBytes.CopyTo(localBytes); else localBytes.CopyTo(guestBytes);
        }
        d.Backend.Copy(ops, local);
        for (int i = 0; i < ops.Length; i++) Assert.Equal(expected[i], ops[i].Status);
        Assert.True(localModel.AsSpan().SequenceEqual(local));
        for (uint f = 0; f < GrantTestDomain.Frames; f++)
            Assert.True(guestModel.AsSpan((int)f * 4096, 4096).SequenceEqual(d.Guest.Page(f)), $"frame {f} differs from the model");
        for (uint r = 8; r < Entries; r++) Assert.Equal(entries[r].Flags, d.Table.Read(r).Flags);

        GrantStatus Model(uint gref, uint offset, ushort length, bool write)
        {
            if (offset + length > 4096) return GrantStatus.BadCopyArg;
            if (gref >= d.Backend.EntryCount) return GrantStatus.BadGntref;
            var (flags, domid, frame) = gref < Entries ? entries[gref] : (GrantFlags.Invalid, (ushort)0, 0u);
            if ((flags & GrantFlags.TypeMask) != GrantFlags.PermitAccess || domid != 0) return GrantStatus.GeneralError;
            if (write && (flags & GrantFlags.Readonly) != 0) return GrantStatus.GeneralError;
            if (frame >= GrantTestDomain.Frames || frame < GrantTestDomain.GrantFrames) return GrantStatus.BadPage;
            return GrantStatus.Okay;
        }
    }
}
