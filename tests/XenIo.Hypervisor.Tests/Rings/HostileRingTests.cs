using System.Runtime.InteropServices;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Rings;
using XenIo.TestPeer.Rings;
using Xunit;

namespace XenIo.Hypervisor.Tests.Rings;

/// <summary>A frontend (or backend) that writes impossible indices and garbage: the ring breaks, nothing throws.</summary>
public unsafe class HostileRingTests
{
    private const int Length = RingGeometry.PageSize;

    [Fact]
    public void Req_prod_past_the_ring_size_breaks_the_back_ring_and_another_ring_keeps_being_served()
    {
        using var hostileMem = new RingTestMemory(Length);
        using var honestMem = new RingTestMemory(Length);
        const uint start = uint.MaxValue - 3;
        var hostileFront = FrontRing<NetifTxRequest, NetifTxResponse>.Init(hostileMem.Address, Length, start);
        var honestFront = FrontRing<NetifTxRequest, NetifTxResponse>.Init(honestMem.Address, Length, start);
        var backs = new[]
        {
            BackRing<NetifTxRequest, NetifTxResponse>.Attach(hostileMem.Address, Length, start),
            BackRing<NetifTxRequest, NetifTxResponse>.Attach(honestMem.Address, Length, start),
        };

        // The hostile frontend starts honestly: three requests, one consumed.
        for (ulong i = 0; i < 3; i++) Assert.True(hostileFront.TryWriteRequest(NetifTxExchange.Request(i)));
        hostileFront.PushRequests();
        Assert.True(backs[0].TryConsumeRequest(out _));

        // Then claims far more requests than the ring holds and fills every slot with garbage.
        Random.Shared.NextBytes(hostileMem.Span[SharedRingHeader.EntriesOffset..]);
        hostileMem.ReqProd = unchecked(start + 256 + 40);

        // One backend loop serving both rings, dropping a broken one, as a daemon would.
        var live = new[] { true, true };
        ulong honestSeq = 0, honestAnswered = 0;
        for (int round = 0; round < 200; round++)
        {
            for (ulong i = 0; i < 7 && honestFront.TryWriteRequest(NetifTxExchange.Request(honestSeq)); i++) honestSeq++;
            honestFront.PushRequests();
            for (int r = 0; r < backs.Length; r++)
            {
                if (!live[r]) continue;
                ref var back = ref backs[r];
                while (back.TryConsumeRequest(out var req))
                {
                    if (r == 1) Assert.True(NetifTxExchange.Matches(req, honestAnswered));
                    back.TryWriteResponse(new NetifTxResponse { Id = req.Id, Status = NetifStatus.Okay });
                    if (r == 1) honestAnswered++;
                }
                back.PushResponses();
                if (back.IsBroken) live[r] = false;
            }
            while (honestFront.TryConsumeResponse(out _)) { }
        }

        Assert.False(live[0]);
        Assert.Equal(RingError.RequestProducerOverflow, backs[0].Error);
        Assert.Equal(0, backs[0].UnconsumedRequests);
        Assert.False(backs[0].TryConsumeRequest(out _));
        Assert.False(backs[0].FinalCheckForRequests());
        // Only the three requests published before the lie were taken (their garbage is the caller's to validate).
        Assert.Equal(3u, backs[0].RequestConsumer - start);
        Assert.True(live[1]);
        Assert.False(backs[1].IsBroken);
        Assert.Equal(1400UL, honestAnswered);
    }

    [Fact]
    public void Req_prod_moving_back_behind_consumed_requests_breaks_the_ring()
    {
        using var mem = new RingTestMemory(Length);
        var front = FrontRing<NetifTxRequest, NetifTxResponse>.Init(mem.Address, Length, 10);
        var back = BackRing<NetifTxRequest, NetifTxResponse>.Attach(mem.Address, Length, 10);
        for (ulong i = 0; i < 20; i++) front.TryWriteRequest(NetifTxExchange.Request(i));
        front.PushRequests();
        for (int i = 0; i < 20; i++) Assert.True(back.TryConsumeRequest(out _));
        for (int i = 0; i < 5; i++) back.TryWriteResponse(default);

        mem.ReqProd = 25; // behind req_cons (30), still ahead of rsp_prod_pvt (15)
        Assert.Equal(0, back.UnconsumedRequests);
        Assert.Equal(RingError.RequestProducerWentBack, back.Error);
        Assert.False(back.TryConsumeRequest(out _));
    }

    [Fact]
    public void Random_indices_and_garbage_never_throw_and_never_yield_more_than_the_ring_holds()
    {
        var random = new Random(1234);
        using var mem = new RingTestMemory(Length);
        for (int trial = 0; trial < 2000; trial++)
        {
            uint start = (uint)random.NextInt64(0, 1L << 32);
            FrontRing<NetifTxRequest, NetifTxResponse>.Init(mem.Address, Length, start);
            var back = BackRing<NetifTxRequest, NetifTxResponse>.Attach(mem.Address, Length, start);
            random.NextBytes(mem.Span[SharedRingHeader.EntriesOffset..]);
            int yielded = 0;
            for (int poke = 0; poke < 4 && !back.IsBroken; poke++)
            {
                mem.ReqProd = random.Next(3) == 0 ? (uint)random.NextInt64(0, 1L << 32) : unchecked(start + (uint)random.Next(-300, 600));
                back.FinalCheckForRequests();
                while (back.TryConsumeRequest(out _))
                {
                    yielded++;
                    if (random.Next(2) == 0) back.TryWriteResponse(default);
                }
                back.PushResponses();
            }
            // Whatever the frontend wrote, the backend took at most what it could answer in place.
            Assert.InRange(back.PendingResponses, 0, back.Size);
            Assert.InRange(yielded, 0, back.Size * 4);
            if (back.IsBroken) Assert.Equal(0, back.UnconsumedRequests);
        }
    }

    [Fact]
    public void A_frontend_scribbling_on_the_page_from_another_thread_never_makes_the_backend_throw_or_overrun()
    {
        using var mem = new RingTestMemory(Length);
        FrontRing<NetifTxRequest, NetifTxResponse>.Init(mem.Address, Length, 0);
        var back = BackRing<NetifTxRequest, NetifTxResponse>.Attach(mem.Address, Length, 0);
        using var stop = new CancellationTokenSource();
        var address = mem.Address;
        // The "guest": a mostly plausible req_prod racing ahead, slots rewritten while they are read.
        var scribbler = new Thread(() =>
        {
            var random = new Random(99);
            var words = new Span<uint>((void*)address, Length / 4);
            uint prod = 0;
            while (!stop.IsCancellationRequested)
            {
                prod += (uint)random.Next(0, 8);
                Volatile.Write(ref words[0], random.Next(5000) == 0 ? (uint)random.Next() : prod);
                words[16 + random.Next(words.Length - 16)] = (uint)random.Next();
            }
        }) { IsBackground = true };
        scribbler.Start();
        long consumed = 0;
        try
        {
            for (int i = 0; i < 200_000 && !back.IsBroken; i++)
            {
                while (back.TryConsumeRequest(out var req))
                {
                    consumed++;
                    back.TryWriteResponse(new NetifTxResponse { Id = req.Id, Status = req.Size > 1514 ? NetifStatus.Error : NetifStatus.Okay });
                    Assert.InRange(back.PendingResponses, 0, back.Size);
                }
                back.PushResponses();
                back.FinalCheckForRequests();
            }
        }
        finally
        {
            stop.Cancel();
            scribbler.Join();
        }
        Assert.True(consumed > 0 || back.IsBroken);
        Assert.InRange(back.PendingResponses, 0, back.Size);
    }

    [Fact]
    public void Backend_claiming_responses_to_requests_never_pushed_breaks_the_front_ring()
    {
        using var mem = new RingTestMemory(Length);
        var front = FrontRing<NetifTxRequest, NetifTxResponse>.Init(mem.Address, Length, uint.MaxValue);
        for (ulong i = 0; i < 4; i++) front.TryWriteRequest(NetifTxExchange.Request(i));
        front.PushRequests();
        front.TryWriteRequest(NetifTxExchange.Request(4)); // written, not pushed: not answerable yet

        mem.RspProd = unchecked(uint.MaxValue + 5u);
        Assert.Equal(0, front.UnconsumedResponses);
        Assert.Equal(RingError.ResponseProducerOverflow, front.Error);
        Assert.False(front.TryConsumeResponse(out _));
        Assert.False(front.FinalCheckForResponses());
    }

    [Fact]
    public void A_consumed_request_is_a_copy_the_frontend_cannot_change()
    {
        using var mem = new RingTestMemory(Length);
        var front = FrontRing<NetifTxRequest, NetifTxResponse>.Init(mem.Address, Length);
        var back = BackRing<NetifTxRequest, NetifTxResponse>.Attach(mem.Address, Length);
        front.TryWriteRequest(NetifTxExchange.Request(99));
        front.PushRequests();
        Assert.True(back.TryConsumeRequest(out var copy));

        // The frontend rewrites the slot after the backend read it (the XSA-155 double fetch).
        var slot = MemoryMarshal.Cast<byte, NetifTxRequest>(mem.Span.Slice(SharedRingHeader.EntriesOffset, 12));
        slot[0].Size = 0xFFFF;
        slot[0].Gref = 0xDEADBEEF;
        Assert.True(NetifTxExchange.Matches(copy, 99));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void Multi_page_blkif_rings_of_order_0_to_4_carry_a_full_ring_twice_over(int order)
    {
        int length = RingGeometry.PagesForOrder(order) * RingGeometry.PageSize;
        using var mem = new RingTestMemory(length);
        var front = FrontRing<BlkifRequest, BlkifResponse>.Init(mem.Address, length, uint.MaxValue - 7);
        var back = BackRing<BlkifRequest, BlkifResponse>.Attach(mem.Address, length, uint.MaxValue - 7);
        Assert.Equal(32 << order, front.Size);
        ulong id = 0, reaped = 0;
        for (int pass = 0; pass < 2; pass++)
        {
            while (front.TryWriteRequest(new BlkifRequest { Operation = BlkifOperation.Read, NrSegments = 1, Id = id, SectorNumber = id * 8 })) id++;
            Assert.True(front.IsFull);
            front.PushRequests();
            while (back.TryConsumeRequest(out var req))
            {
                Assert.Equal(req.Id * 8, req.SectorNumber);
                Assert.True(back.TryWriteResponse(BlkifResponse.Create(req.Id, req.Operation, BlkifStatus.Okay)));
            }
            back.PushResponses();
            while (front.TryConsumeResponse(out var rsp)) Assert.Equal(reaped++, rsp.Id);
        }
        Assert.Equal(id, reaped);
        Assert.Equal((ulong)(2 * (32 << order)), reaped);
    }

    [Fact]
    public void Attach_refuses_memory_that_holds_no_entry_or_is_misaligned()
    {
        using var mem = new RingTestMemory(Length);
        Assert.Throws<ArgumentOutOfRangeException>(() => BackRing<BlkifRequest, BlkifResponse>.Attach(mem.Address, 100));
        Assert.Throws<ArgumentException>(() => BackRing<BlkifRequest, BlkifResponse>.Attach(mem.Address + 4, 4000));
        Assert.Throws<ArgumentNullException>(() => FrontRing<BlkifRequest, BlkifResponse>.Init(0, 4096));
    }
}
