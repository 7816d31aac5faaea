namespace XenIo.Netback.Vif;

/// <summary>
/// A vif's own counters beside its switch port's (<see cref="VSwitch.Core.PortCounters"/>): what the
/// frontend did wrong and how the queues coped. Fields are bumped with Interlocked by the queue threads.
/// </summary>
public sealed class VifStats
{
    public long TxBadGrants;
    public long TxMalformed;
    public long TxTooManySlots;
    public long TxSpoofDrops;
    public long TxBadOffload;
    public long TxGsoFrames;
    public long RxGsoFrames;
    public long RxBadGrants;
    public long RxQueued;
    public long RxQueueDrops;
    public long RxMulticastFiltered;
    public long EventsRateLimited;
    public long CreditWaits;
    public long Connects;
    public long Disconnects;
    public long Failures;

    public IEnumerable<KeyValuePair<string, long>> All()
    {
        yield return new("tx_bad_grants", Interlocked.Read(ref TxBadGrants));
        yield return new("tx_malformed", Interlocked.Read(ref TxMalformed));
        yield return new("tx_too_many_slots", Interlocked.Read(ref TxTooManySlots));
        yield return new("tx_spoof_drops", Interlocked.Read(ref TxSpoofDrops));
        yield return new("tx_bad_offload", Interlocked.Read(ref TxBadOffload));
        yield return new("tx_gso_frames", Interlocked.Read(ref TxGsoFrames));
        yield return new("rx_gso_frames", Interlocked.Read(ref RxGsoFrames));
        yield return new("rx_bad_grants", Interlocked.Read(ref RxBadGrants));
        yield return new("rx_queued", Interlocked.Read(ref RxQueued));
        yield return new("rx_queue_drops", Interlocked.Read(ref RxQueueDrops));
        yield return new("rx_multicast_filtered", Interlocked.Read(ref RxMulticastFiltered));
        yield return new("events_rate_limited", Interlocked.Read(ref EventsRateLimited));
        yield return new("credit_waits", Interlocked.Read(ref CreditWaits));
        yield return new("connects", Interlocked.Read(ref Connects));
        yield return new("disconnects", Interlocked.Read(ref Disconnects));
        yield return new("failures", Interlocked.Read(ref Failures));
    }
}
