namespace XenIo.Hypervisor.Rings;

/// <summary>
/// Why a ring stopped. A broken ring consumes nothing more: the peer that wrote impossible indices
/// is disconnected by whoever owns the ring (XSA-39: a malformed ring disables the interface, it
/// never loops forever and never throws).
/// </summary>
public enum RingError
{
    None = 0,

    /// <summary>The frontend published <c>req_prod</c> more than a ring's worth ahead of the responses (<c>RING_REQUEST_PROD_OVERFLOW</c>).</summary>
    RequestProducerOverflow,

    /// <summary>The frontend moved <c>req_prod</c> back behind requests already consumed.</summary>
    RequestProducerWentBack,

    /// <summary>The backend published more responses than requests were pushed (<c>RING_RESPONSE_PROD_OVERFLOW</c> and stricter).</summary>
    ResponseProducerOverflow,
}
