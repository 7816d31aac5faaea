using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Grants;
using XenIo.Tests;
using Xunit;

namespace XenIo.Hypervisor.Tests.Grants;

public class GrantHotPathTests
{
    [Fact]
    public void Grant_copy_batches_allocate_nothing()
    {
        using var d = new GrantTestDomain();
        var ops = new GrantCopyOp[16];
        for (int i = 0; i < ops.Length; i++)
            ops[i] = GrantCopyOp.FromGrant(GrantTestDomain.GuestDomid, d.Table.GrantAccess(0, GrantTestDomain.GrantFrames + (uint)i, true), 0, (uint)i * 4096, 4096);
        var local = new byte[16 * 4096];
        Assert.Equal(0, SteadyStateAllocation.BytesOver(1000, () => d.Backend.Copy(ops, local)));
        Assert.All(ops, op => Assert.Equal(GrantStatus.Okay, op.Status));
    }

    /// <summary>
    /// Threads of one backend copy from and map the same grant at once while the guest watches the
    /// entry: it is marked in use whenever a mapping is certainly held, and ends cleanly afterwards.
    /// </summary>
    [Fact]
    public async Task Pins_from_concurrent_threads_keep_the_grant_in_use_until_the_last_one_goes()
    {
        using var d = new GrantTestDomain();
        uint frame = GrantTestDomain.GrantFrames + 5;
        uint gref = d.Table.GrantAccess(0, frame, readOnly: false);
        // Odd while worker 0 holds a mapping: a guest that reads the same odd value before and after
        // looking at the entry looked while the grant was certainly mapped.
        int generation = 0;
        int checkedWhileHeld = 0;
        bool endedWhileHeld = false;
        using var stop = new CancellationTokenSource();
        var workers = Enumerable.Range(0, 3).Select(w => Task.Run(() =>
        {
            var local = new byte[4096];
            var op = new GrantCopyOp[1];
            for (int i = 0; i < 20_000; i++)
            {
                if (w == 0)
                {
                    Assert.Equal(GrantStatus.Okay, d.Backend.Map(gref, readOnly: i % 2 == 0, out var m));
                    Interlocked.Increment(ref generation);
                    for (int k = 0; k < 64; k++) _ = m.Page[k];
                    // Now and then hold the mapping until the guest has looked (bounded), so a loaded
                    // machine that never schedules the guest inside a short window still checks something.
                    if (i % 2000 == 0)
                    {
                        int seen = Volatile.Read(ref checkedWhileHeld);
                        var until = Environment.TickCount64 + 2000;
                        while (Volatile.Read(ref checkedWhileHeld) == seen && Environment.TickCount64 < until) Thread.Yield();
                    }
                    Interlocked.Increment(ref generation);
                    Assert.Equal(GrantStatus.Okay, d.Backend.Unmap(m));
                }
                else
                {
                    op[0] = w == 1 ? GrantCopyOp.FromGrant(GrantTestDomain.GuestDomid, gref, 0, 0, 64) : GrantCopyOp.ToGrant(0, GrantTestDomain.GuestDomid, gref, 64, 64);
                    d.Backend.Copy(op, local);
                    Assert.Equal(GrantStatus.Okay, op[0].Status);
                }
            }
        })).ToArray();
        var guest = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                int g1 = Volatile.Read(ref generation);
                var flags = d.Table.Read(gref).Flags;
                int g2 = Volatile.Read(ref generation);
                if (g1 != g2 || (g1 & 1) == 0) continue;
                Interlocked.Increment(ref checkedWhileHeld);
                if ((flags & GrantFlags.Reading) == 0) endedWhileHeld = true;
            }
        });
        await Task.WhenAll(workers);
        stop.Cancel();
        await guest;
        Assert.False(endedWhileHeld);
        Assert.True(checkedWhileHeld > 0, "the guest never looked while a mapping was held");
        Assert.Equal(GrantFlags.PermitAccess, d.Table.Read(gref).Flags);
        Assert.True(d.Table.EndAccess(gref));
    }

    [Fact]
    public void Consecutive_copies_of_one_grant_pin_it_once_and_still_check_writes()
    {
        using var d = new GrantTestDomain();
        uint frame = GrantTestDomain.GrantFrames + 6;
        uint rw = d.Table.GrantAccess(0, frame, readOnly: false);
        uint ro = d.Table.GrantAccess(0, frame + 1, readOnly: true);
        int swaps = 0;
        d.Backend.BeforeCompareExchange = _ => swaps++;
        var local = new byte[8 * 4096];
        var ops = new GrantCopyOp[]
        {
            GrantCopyOp.FromGrant(GrantTestDomain.GuestDomid, rw, 0, 0, 100),
            GrantCopyOp.FromGrant(GrantTestDomain.GuestDomid, rw, 100, 4096, 100),
            GrantCopyOp.ToGrant(0, GrantTestDomain.GuestDomid, rw, 200, 100),
            GrantCopyOp.ToGrant(0, GrantTestDomain.GuestDomid, rw, 300, 100),
            GrantCopyOp.FromGrant(GrantTestDomain.GuestDomid, ro, 0, 8192, 100),
            GrantCopyOp.ToGrant(0, GrantTestDomain.GuestDomid, ro, 0, 100),
        };
        d.Backend.Copy(ops, local);
        Assert.Equal([GrantStatus.Okay, GrantStatus.Okay, GrantStatus.Okay, GrantStatus.Okay, GrantStatus.Okay, GrantStatus.GeneralError], ops.Select(o => o.Status));
        // rw: one swap for the read pin, one for the first write pin; ro: one (the write is refused before any swap).
        Assert.Equal(3, swaps);
        Assert.Equal(GrantFlags.PermitAccess, d.Table.Read(rw).Flags);
        Assert.Equal(GrantFlags.PermitAccess | GrantFlags.Readonly, d.Table.Read(ro).Flags);
    }
}
