using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Rings;
using Xunit;

namespace XenIo.Hypervisor.Tests.Rings;

public unsafe class RingMemoryTests
{
    [Fact]
    public void A_ring_works_over_a_pinned_byte_array_and_initialises_the_header_as_SHARED_RING_INIT()
    {
        var page = GC.AllocateArray<byte>(RingGeometry.PageSize, pinned: true);
        page.AsSpan().Fill(0xAA); // garbage the init must clear
        nint address = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(page));
        var front = FrontRing<NetifRxRequest, NetifRxResponse>.Init(address, page.Length, 5);
        var header = MemoryMarshal.Read<SharedRingHeader>(page);
        Assert.Equal((5u, 6u, 5u, 6u, 0u), (header.ReqProd, header.ReqEvent, header.RspProd, header.RspEvent, header.Private));
        Assert.All(page[16..64], b => Assert.Equal(0, b));
        Assert.Equal(256, front.Size);
        Assert.Equal(256, front.FreeRequests);

        var back = BackRing<NetifRxRequest, NetifRxResponse>.Attach(address, page.Length, 5);
        for (ushort i = 0; i < 256; i++) Assert.True(front.TryWriteRequest(new NetifRxRequest { Id = i, Gref = 1000u + i }));
        Assert.True(front.IsFull);
        Assert.False(front.TryWriteRequest(default));
        Assert.True(front.PushRequests()); // req_event was 6: the first push notifies
        Assert.Equal(256, back.UnconsumedRequests);
        for (ushort i = 0; i < 256; i++)
        {
            Assert.True(back.TryConsumeRequest(out var req));
            Assert.Equal((i, 1000u + i), (req.Id, req.Gref));
            // An rx response goes in the slot of its request.
            Assert.True(back.TryWriteResponse(new NetifRxResponse { Id = req.Id, Status = 60 }));
        }
        Assert.False(back.TryWriteResponse(default)); // no request left to answer
        Assert.True(back.PushResponses());
        for (ushort i = 0; i < 256; i++)
        {
            Assert.True(front.TryConsumeResponse(out var rsp));
            Assert.Equal(i, rsp.Id);
        }
        Assert.False(front.FinalCheckForResponses());
        Assert.Equal(5u + 256 + 1, MemoryMarshal.Read<SharedRingHeader>(page).RspEvent);
        GC.KeepAlive(page);
    }

    [Fact]
    public void Entry_size_is_the_larger_of_request_and_response()
    {
        Assert.Equal(12, SharedRingMemory.EntrySize<NetifTxRequest, NetifTxResponse>());
        Assert.Equal(112, SharedRingMemory.EntrySize<BlkifRequest, BlkifResponse>());
        Assert.Equal(16, SharedRingMemory.EntrySize<NetifTxResponse, BlkifResponse>());
    }
}
