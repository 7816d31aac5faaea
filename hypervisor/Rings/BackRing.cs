using System.Runtime.CompilerServices;
using XenIo.Hypervisor.Abi;

namespace XenIo.Hypervisor.Rings;

/// <summary>
/// The back half of an io/ring.h shared ring (<c>*_back_ring</c>): takes requests, pushes responses.
/// The frontend is hostile: every request is copied out of shared memory once before the caller
/// sees it (XSA-155), and a <c>req_prod</c> that claims more than the ring holds
/// (<c>RING_REQUEST_PROD_OVERFLOW</c>) or runs backwards breaks the ring: it then yields nothing,
/// and nothing throws (XSA-39).
/// </summary>
/// <remarks>
/// A mutable struct: keep it in a field or local and pass it by <c>ref</c>. Nothing allocates.
/// The memory must outlive the ring and stay where it is (a pinned buffer or an mmap).
/// </remarks>
public unsafe struct BackRing<TReq, TRsp>
    where TReq : unmanaged
    where TRsp : unmanaged
{
    private readonly byte* _sring;
    private readonly uint _size;
    private uint _rspProdPvt;
    private uint _rspProdPublished;
    private uint _reqCons;
    private uint _reqProdSeen;
    private RingError _error;

    private BackRing(nint address, int length, uint index)
    {
        _size = SharedRingMemory.Slots(address, length, SharedRingMemory.EntrySize<TReq, TRsp>());
        _sring = (byte*)address;
        _rspProdPvt = index;
        _rspProdPublished = index;
        _reqCons = index;
        _reqProdSeen = index;
    }

    /// <summary>
    /// <c>BACK_RING_ATTACH</c> (<c>BACK_RING_INIT</c> when <paramref name="index"/> is 0): the back
    /// never initialises the shared header, the front did.
    /// </summary>
    public static BackRing<TReq, TRsp> Attach(nint address, int length, uint index = 0) =>
        new(address, length, index);

    /// <summary><c>RING_SIZE</c>: slots in the ring.</summary>
    public readonly int Size => (int)_size;

    public readonly uint RequestConsumer => _reqCons;
    public readonly uint ResponseProducerPrivate => _rspProdPvt;
    public readonly RingError Error => _error;
    public readonly bool IsBroken => _error != RingError.None;

    /// <summary>Requests consumed that have no response yet.</summary>
    public readonly int PendingResponses => (int)(_reqCons - _rspProdPvt);

    /// <summary>
    /// <c>RING_HAS_UNCONSUMED_REQUESTS</c>: requests published and not yet taken. Checks the
    /// frontend's <c>req_prod</c> first; an impossible one breaks the ring and yields 0.
    /// </summary>
    public int UnconsumedRequests
    {
        get
        {
            if (_error != RingError.None) return 0;
            Refresh();
            return (int)(_reqProdSeen - _reqCons);
        }
    }

    /// <summary>
    /// Copies the next request out of shared memory once into <paramref name="request"/>; validate
    /// and use only that copy. False when none is published or the ring is broken.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryConsumeRequest(out TReq request)
    {
        if (_reqCons == _reqProdSeen && !Refresh())
        {
            request = default;
            return false;
        }
        request = *(TReq*)Slot(_reqCons);
        _reqCons++;
        return true;
    }

    /// <summary>
    /// Writes <paramref name="response"/> (every byte of it, padding included: XSA-216) into the
    /// next private response slot; the frontend sees it after <see cref="PushResponses"/>. False when
    /// no consumed request is waiting for a response.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryWriteResponse(in TRsp response)
    {
        if (_rspProdPvt == _reqCons || _error != RingError.None) return false;
        *(TRsp*)Slot(_rspProdPvt) = response;
        _rspProdPvt++;
        return true;
    }

    /// <summary>
    /// <c>RING_PUSH_RESPONSES_AND_CHECK_NOTIFY</c>: publishes the private responses and says whether
    /// the frontend asked to be notified of them (<c>(u32)(new - rsp_event) &lt; (u32)(new - old)</c>).
    /// </summary>
    public bool PushResponses()
    {
        // "old" is our own last published value, not a re-read of rsp_prod, which the frontend
        // could have scribbled on; for an honest frontend the two are equal.
        uint old = _rspProdPublished;
        uint @new = _rspProdPvt;
        Volatile.Write(ref RspProd, @new);
        _rspProdPublished = @new;
        Interlocked.MemoryBarrier();
        uint rspEvent = Volatile.Read(ref RspEvent);
        return @new - rspEvent < @new - old;
    }

    /// <summary>
    /// <c>RING_FINAL_CHECK_FOR_REQUESTS</c>: when nothing is pending, asks for a notification at the
    /// next request (<c>req_event = req_cons + 1</c>), then looks once more to close the race.
    /// True means there is work and no notification will come for it.
    /// </summary>
    public bool FinalCheckForRequests()
    {
        if (UnconsumedRequests > 0) return true;
        if (_error != RingError.None) return false;
        Volatile.Write(ref ReqEvent, _reqCons + 1);
        Interlocked.MemoryBarrier();
        return UnconsumedRequests > 0;
    }

    /// <summary>Reads <c>req_prod</c>; false when nothing new or the ring broke on it.</summary>
    private bool Refresh()
    {
        if (_error != RingError.None) return false;
        // Acquire load: the requests are read after the index (xen_rmb).
        uint reqProd = Volatile.Read(ref ReqProd);
        if (reqProd - _rspProdPvt > _size)
        {
            // RING_REQUEST_PROD_OVERFLOW. Passing it also bounds consumption to the slots whose
            // responses are out (RING_REQUEST_CONS_OVERFLOW), so no min() is needed below.
            _error = RingError.RequestProducerOverflow;
            return false;
        }
        if (reqProd - _reqCons > _size)
        {
            _error = RingError.RequestProducerWentBack;
            return false;
        }
        _reqProdSeen = reqProd;
        return reqProd != _reqCons;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private readonly byte* Slot(uint index) =>
        _sring + SharedRingHeader.EntriesOffset + (nint)(index & (_size - 1)) * SharedRingMemory.EntrySize<TReq, TRsp>();

    private readonly ref uint ReqProd => ref SharedRingMemory.Field(_sring, SharedRingHeader.ReqProdOffset);
    private readonly ref uint ReqEvent => ref SharedRingMemory.Field(_sring, SharedRingHeader.ReqEventOffset);
    private readonly ref uint RspProd => ref SharedRingMemory.Field(_sring, SharedRingHeader.RspProdOffset);
    private readonly ref uint RspEvent => ref SharedRingMemory.Field(_sring, SharedRingHeader.RspEventOffset);
}
