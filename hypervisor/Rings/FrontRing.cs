using System.Runtime.CompilerServices;
using XenIo.Hypervisor.Abi;

namespace XenIo.Hypervisor.Rings;

/// <summary>
/// The front half of an io/ring.h shared ring (<c>*_front_ring</c>): pushes requests, takes
/// responses. The private <c>req_prod_pvt</c> and <c>rsp_cons</c> live here; only the shared page is
/// shared. A backend that publishes impossible responses breaks the ring (<see cref="Error"/>): it
/// then yields nothing and never throws.
/// </summary>
/// <remarks>
/// A mutable struct: keep it in a field or local and pass it by <c>ref</c>; a copy has its own
/// private indices. Nothing allocates. The memory must outlive the ring and stay where it is
/// (a pinned buffer or an mmap).
/// </remarks>
public unsafe struct FrontRing<TReq, TRsp>
    where TReq : unmanaged
    where TRsp : unmanaged
{
    private readonly byte* _sring;
    private readonly uint _size;
    private uint _reqProdPvt;
    private uint _reqProdPublished;
    private uint _rspCons;
    private uint _rspProdSeen;
    private RingError _error;

    private FrontRing(nint address, int length, uint index)
    {
        _size = SharedRingMemory.Slots(address, length, SharedRingMemory.EntrySize<TReq, TRsp>());
        _sring = (byte*)address;
        _reqProdPvt = index;
        _reqProdPublished = index;
        _rspCons = index;
        _rspProdSeen = index;
    }

    /// <summary>
    /// <c>XEN_FRONT_RING_INIT</c>: initialises the shared header (the front does this, the back only
    /// attaches) and attaches. <paramref name="startIndex"/> is 0 in Xen; anything else tests wrap-around.
    /// </summary>
    public static FrontRing<TReq, TRsp> Init(nint address, int length, uint startIndex = 0)
    {
        var ring = new FrontRing<TReq, TRsp>(address, length, startIndex);
        SharedRingMemory.Init(ring._sring, startIndex);
        return ring;
    }

    /// <summary><c>FRONT_RING_ATTACH</c>: takes over a ring already in use at <paramref name="index"/>.</summary>
    public static FrontRing<TReq, TRsp> Attach(nint address, int length, uint index) =>
        new(address, length, index);

    /// <summary><c>RING_SIZE</c>: slots in the ring.</summary>
    public readonly int Size => (int)_size;

    public readonly uint RequestProducerPrivate => _reqProdPvt;
    public readonly uint ResponseConsumer => _rspCons;
    public readonly RingError Error => _error;
    public readonly bool IsBroken => _error != RingError.None;

    /// <summary><c>RING_FREE_REQUESTS</c>.</summary>
    public readonly int FreeRequests => (int)(_size - (_reqProdPvt - _rspCons));

    /// <summary><c>RING_FULL</c>.</summary>
    public readonly bool IsFull => _reqProdPvt - _rspCons == _size;

    /// <summary>
    /// Writes <paramref name="request"/> into the next private slot; the backend sees it after
    /// <see cref="PushRequests"/>. False when the ring is full or broken.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryWriteRequest(in TReq request)
    {
        if (_reqProdPvt - _rspCons >= _size || _error != RingError.None) return false;
        *(TReq*)Slot(_reqProdPvt) = request;
        _reqProdPvt++;
        return true;
    }

    /// <summary>
    /// <c>RING_PUSH_REQUESTS_AND_CHECK_NOTIFY</c>: publishes the private requests and says whether
    /// the backend asked to be notified of them (<c>(u32)(new - req_event) &lt; (u32)(new - old)</c>).
    /// </summary>
    public bool PushRequests()
    {
        uint old = _reqProdPublished;
        uint @new = _reqProdPvt;
        // Release store: the backend sees the requests before the index (xen_wmb).
        Volatile.Write(ref ReqProd, @new);
        _reqProdPublished = @new;
        // The backend sees the new index before we read req_event (xen_mb).
        Interlocked.MemoryBarrier();
        uint reqEvent = Volatile.Read(ref ReqEvent);
        return @new - reqEvent < @new - old;
    }

    /// <summary>
    /// <c>RING_HAS_UNCONSUMED_RESPONSES</c>: responses published and not yet taken. Checks the
    /// backend's <c>rsp_prod</c> first; an impossible one breaks the ring and yields 0.
    /// </summary>
    public int UnconsumedResponses
    {
        get
        {
            if (_error != RingError.None) return 0;
            Refresh();
            return (int)(_rspProdSeen - _rspCons);
        }
    }

    /// <summary>
    /// Copies the next response out of shared memory once into <paramref name="response"/> (the
    /// backend cannot change the copy); false when none is published or the ring is broken.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryConsumeResponse(out TRsp response)
    {
        if (_rspCons == _rspProdSeen && !Refresh())
        {
            response = default;
            return false;
        }
        response = *(TRsp*)Slot(_rspCons);
        _rspCons++;
        return true;
    }

    /// <summary>
    /// <c>RING_FINAL_CHECK_FOR_RESPONSES</c>: when nothing is pending, asks for a notification at the
    /// next response (<c>rsp_event = rsp_cons + 1</c>), then looks once more to close the race.
    /// True means there is work and no notification will come for it.
    /// </summary>
    public bool FinalCheckForResponses()
    {
        if (UnconsumedResponses > 0) return true;
        if (_error != RingError.None) return false;
        Volatile.Write(ref RspEvent, _rspCons + 1);
        Interlocked.MemoryBarrier();
        return UnconsumedResponses > 0;
    }

    /// <summary>Reads <c>rsp_prod</c>; false when nothing new or the ring broke on it.</summary>
    private bool Refresh()
    {
        if (_error != RingError.None) return false;
        // Acquire load: the responses are read after the index (xen_rmb).
        uint rspProd = Volatile.Read(ref RspProd);
        // A backend can only have answered requests we pushed: anything beyond is a lie, and
        // RING_RESPONSE_PROD_OVERFLOW (> RING_SIZE) is the weaker form of this check.
        if (rspProd - _rspCons > _reqProdPublished - _rspCons)
        {
            _error = RingError.ResponseProducerOverflow;
            return false;
        }
        _rspProdSeen = rspProd;
        return rspProd != _rspCons;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private readonly byte* Slot(uint index) =>
        _sring + SharedRingHeader.EntriesOffset + (nint)(index & (_size - 1)) * SharedRingMemory.EntrySize<TReq, TRsp>();

    private readonly ref uint ReqProd => ref SharedRingMemory.Field(_sring, SharedRingHeader.ReqProdOffset);
    private readonly ref uint ReqEvent => ref SharedRingMemory.Field(_sring, SharedRingHeader.ReqEventOffset);
    private readonly ref uint RspProd => ref SharedRingMemory.Field(_sring, SharedRingHeader.RspProdOffset);
    private readonly ref uint RspEvent => ref SharedRingMemory.Field(_sring, SharedRingHeader.RspEventOffset);
}
