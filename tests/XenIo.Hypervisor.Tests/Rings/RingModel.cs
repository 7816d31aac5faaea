namespace XenIo.Hypervisor.Tests.Rings;

/// <summary>
/// io/ring.h transcribed line by line onto plain fields: the reference the real rings are checked
/// against. Shared fields first, then the front's and the back's private indices.
/// </summary>
internal sealed class RingModel(uint size, uint start)
{
    public uint ReqProd = start, ReqEvent = start + 1, RspProd = start, RspEvent = start + 1;
    public uint ReqProdPvt = start, RspCons = start;
    public uint RspProdPvt = start, ReqCons = start;
    public readonly uint Size = size;

    // RING_FREE_REQUESTS
    public uint FreeRequests => Size - (ReqProdPvt - RspCons);

    // RING_HAS_UNCONSUMED_RESPONSES
    public uint UnconsumedResponses => RspProd - RspCons;

    // RING_HAS_UNCONSUMED_REQUESTS (the GNU C variant)
    public uint UnconsumedRequests
    {
        get
        {
            uint req = ReqProd - ReqCons;
            uint rsp = Size - (ReqCons - RspProdPvt);
            return req < rsp ? req : rsp;
        }
    }

    // RING_PUSH_REQUESTS_AND_CHECK_NOTIFY
    public bool PushRequests()
    {
        uint old = ReqProd, @new = ReqProdPvt;
        ReqProd = @new;
        return (uint)(@new - ReqEvent) < (uint)(@new - old);
    }

    // RING_PUSH_RESPONSES_AND_CHECK_NOTIFY
    public bool PushResponses()
    {
        uint old = RspProd, @new = RspProdPvt;
        RspProd = @new;
        return (uint)(@new - RspEvent) < (uint)(@new - old);
    }

    // RING_FINAL_CHECK_FOR_REQUESTS
    public bool FinalCheckForRequests()
    {
        if (UnconsumedRequests != 0) return true;
        ReqEvent = ReqCons + 1;
        return UnconsumedRequests != 0;
    }

    // RING_FINAL_CHECK_FOR_RESPONSES
    public bool FinalCheckForResponses()
    {
        if (UnconsumedResponses != 0) return true;
        RspEvent = RspCons + 1;
        return UnconsumedResponses != 0;
    }
}
