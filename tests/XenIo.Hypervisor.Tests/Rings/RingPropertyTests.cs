using FsCheck.Xunit;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Rings;
using XenIo.TestPeer.Rings;
using Xunit;

namespace XenIo.Hypervisor.Tests.Rings;

/// <summary>
/// Random interleavings of everything a front and a back do, on real rings over one buffer, checked
/// step by step against <see cref="RingModel"/>: shared header, private indices, counts, every
/// notify decision and every payload.
/// </summary>
public class RingPropertyTests
{
    private static readonly int[] SlotChoices = [1, 2, 4, 8, 32, 256, 1024];

    [Property(MaxTest = 300)]
    public void Interleavings_match_io_ring_h(int seed, uint rawStart, byte startKind, byte slotKind)
    {
        // Starts anywhere, often within a few hundred of 2^32 so the run crosses the wrap.
        uint start = (startKind % 3) switch
        {
            0 => rawStart,
            1 => uint.MaxValue - (rawStart % 600),
            _ => unchecked((uint)(rawStart * 2654435761u)),
        };
        int slots = SlotChoices[slotKind % SlotChoices.Length];
        int length = SharedRingHeader.EntriesOffset + slots * 12 + (slotKind % 2) * 11; // a little slack must not add slots
        using var mem = new RingTestMemory(length);
        var front = FrontRing<NetifTxRequest, NetifTxResponse>.Init(mem.Address, length, start);
        var back = BackRing<NetifTxRequest, NetifTxResponse>.Attach(mem.Address, length, start);
        var model = new RingModel((uint)slots, start);
        Assert.Equal(slots, front.Size);
        Assert.Equal(slots, back.Size);

        var random = new Random(seed);
        ulong written = 0, consumed = 0, answered = 0, reaped = 0;
        long frontNotifies = 0, backNotifies = 0, modelFrontNotifies = 0, modelBackNotifies = 0;
        for (int step = 0; step < 400; step++)
        {
            int k = random.Next(0, slots + 3);
            switch (random.Next(8))
            {
                case 0: // front writes up to k requests
                    for (int i = 0; i < k; i++)
                    {
                        bool ok = front.TryWriteRequest(NetifTxExchange.Request(written));
                        Assert.Equal(model.FreeRequests > 0, ok);
                        if (!ok) break;
                        model.ReqProdPvt++;
                        written++;
                    }
                    break;
                case 1:
                    {
                        bool n = front.PushRequests(), m = model.PushRequests();
                        Assert.Equal(m, n);
                        if (n) frontNotifies++;
                        if (m) modelFrontNotifies++;
                        break;
                    }
                case 2: // back consumes up to k requests, each checked from its copy
                    for (int i = 0; i < k; i++)
                    {
                        Assert.Equal((int)model.UnconsumedRequests, back.UnconsumedRequests);
                        bool ok = back.TryConsumeRequest(out var req);
                        Assert.Equal(model.UnconsumedRequests > 0, ok);
                        if (!ok) break;
                        Assert.True(NetifTxExchange.Matches(req, consumed), $"request {consumed} garbled");
                        model.ReqCons++;
                        consumed++;
                    }
                    break;
                case 3: // back answers up to k consumed requests
                    for (int i = 0; i < k; i++)
                    {
                        bool ok = back.TryWriteResponse(NetifTxExchange.Response(answered));
                        Assert.Equal(model.RspProdPvt != model.ReqCons, ok);
                        if (!ok) break;
                        model.RspProdPvt++;
                        answered++;
                    }
                    break;
                case 4:
                    {
                        bool n = back.PushResponses(), m = model.PushResponses();
                        Assert.Equal(m, n);
                        if (n) backNotifies++;
                        if (m) modelBackNotifies++;
                        break;
                    }
                case 5:
                    Assert.Equal(model.FinalCheckForRequests(), back.FinalCheckForRequests());
                    break;
                case 6: // front reaps up to k responses
                    for (int i = 0; i < k; i++)
                    {
                        Assert.Equal((int)model.UnconsumedResponses, front.UnconsumedResponses);
                        bool ok = front.TryConsumeResponse(out var rsp);
                        Assert.Equal(model.UnconsumedResponses > 0, ok);
                        if (!ok) break;
                        Assert.True(NetifTxExchange.Matches(rsp, reaped), $"response {reaped} garbled");
                        model.RspCons++;
                        reaped++;
                    }
                    break;
                case 7:
                    Assert.Equal(model.FinalCheckForResponses(), front.FinalCheckForResponses());
                    break;
            }

            Assert.Equal(model.ReqProd, mem.ReqProd);
            Assert.Equal(model.ReqEvent, mem.ReqEvent);
            Assert.Equal(model.RspProd, mem.RspProd);
            Assert.Equal(model.RspEvent, mem.RspEvent);
            Assert.Equal(model.ReqProdPvt, front.RequestProducerPrivate);
            Assert.Equal(model.RspCons, front.ResponseConsumer);
            Assert.Equal(model.RspProdPvt, back.ResponseProducerPrivate);
            Assert.Equal(model.ReqCons, back.RequestConsumer);
            Assert.Equal((int)model.FreeRequests, front.FreeRequests);
            Assert.Equal(model.FreeRequests == 0, front.IsFull);
            Assert.False(front.IsBroken);
            Assert.False(back.IsBroken);
        }
        Assert.Equal(modelFrontNotifies, frontNotifies);
        Assert.Equal(modelBackNotifies, backNotifies);
    }

    /// <summary>
    /// Steady request/response batches with both ends sleeping between them: the notify count is the
    /// model's, and batching keeps it at about one per batch, not one per request.
    /// </summary>
    [Theory]
    [InlineData(0u)]
    [InlineData(uint.MaxValue - 100)]
    public void Batched_exchange_notifies_as_the_model_says(uint start)
    {
        int length = RingGeometry.PageSize;
        using var mem = new RingTestMemory(length);
        var front = FrontRing<NetifTxRequest, NetifTxResponse>.Init(mem.Address, length, start);
        var back = BackRing<NetifTxRequest, NetifTxResponse>.Attach(mem.Address, length, start);
        var model = new RingModel(256, start);
        long notifies = 0, modelNotifies = 0;
        var random = new Random(7);
        ulong seq = 0;
        for (int round = 0; round < 2000; round++)
        {
            int batch = random.Next(1, 257);
            for (int i = 0; i < batch; i++) { Assert.True(front.TryWriteRequest(NetifTxExchange.Request(seq + (ulong)i))); model.ReqProdPvt++; }
            if (front.PushRequests()) notifies++;
            if (model.PushRequests()) modelNotifies++;
            for (int i = 0; i < batch; i++)
            {
                Assert.True(back.TryConsumeRequest(out var req));
                Assert.True(NetifTxExchange.Matches(req, seq + (ulong)i));
                Assert.True(back.TryWriteResponse(NetifTxExchange.Response(seq + (ulong)i)));
                model.ReqCons++;
                model.RspProdPvt++;
            }
            if (back.PushResponses()) notifies++;
            if (model.PushResponses()) modelNotifies++;
            Assert.Equal(model.FinalCheckForRequests(), back.FinalCheckForRequests());
            for (int i = 0; i < batch; i++) { Assert.True(front.TryConsumeResponse(out _)); model.RspCons++; }
            Assert.Equal(model.FinalCheckForResponses(), front.FinalCheckForResponses());
            seq += (ulong)batch;
        }
        Assert.Equal(modelNotifies, notifies);
        // Each side slept after every batch, so every push notified: two per round.
        Assert.Equal(4000, notifies);
    }
}
