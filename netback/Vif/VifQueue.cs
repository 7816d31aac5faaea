using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Events;
using XenIo.Hypervisor.Grants;
using XenIo.Hypervisor.Hypercalls;
using XenIo.Hypervisor.Rings;
using XenIo.VSwitch.Core;

namespace XenIo.Netback.Vif;

/// <summary>
/// One queue of a vif (Linux's <c>struct xenvif_queue</c>): its TX and RX rings mapped from the
/// frontend, their event channels, and the threads that serve them. TX (guest to switch) lives in
/// <c>VifQueue.Tx.cs</c>, RX (switch to guest) in <c>VifQueue.Rx.cs</c>. Everything the frontend
/// writes is hostile: requests are copied out once by <see cref="BackRing{TReq,TRsp}"/>, and a
/// frontend that breaks the protocol gets <see cref="Fail"/>: the queue stops at once and its vif is
/// disconnected by the xenbus layer. Nothing here throws past the queue's threads.
/// </summary>
internal sealed partial class VifQueue
{
    /// <summary>Consecutive wake-ups with nothing to do before the queue slows down (XSA-332).</summary>
    private const int SpuriousBurst = 16;
    private const int IdleWaitMs = 100;

    private readonly VifPort _vif;
    private readonly ForeignDomain _foreign;
    private readonly HypercallClient _hypercalls;
    private readonly ushort _domid;
    private readonly GrantMapping _txMap;
    private readonly GrantMapping _rxMap;
    private readonly EventChannel _txEvent;
    private readonly EventChannel _rxEvent;
    private BackRing<NetifTxRequest, NetifTxResponse> _tx;
    private BackRing<NetifRxRequest, NetifRxResponse> _rx;
    private Thread? _txThread;
    private Thread? _rxThread;
    private volatile bool _stopping;
    private int _failed;

    private VifQueue(VifPort vif, int index, ForeignDomain foreign, HypercallClient hypercalls, VifFrontendFeatures features,
        GrantMapping txMap, GrantMapping rxMap, EventChannel txEvent, EventChannel rxEvent)
    {
        _vif = vif;
        Index = index;
        _foreign = foreign;
        _hypercalls = hypercalls;
        _domid = foreign.Domid;
        Features = features;
        _txMap = txMap;
        _rxMap = rxMap;
        _txEvent = txEvent;
        _rxEvent = rxEvent;
        unsafe
        {
            // BACK_RING_ATTACH at the ring's own rsp_prod, as Linux does: a frontend that kept its rings
            // across a backend restart resumes where the old backend stopped answering.
            _tx = BackRing<NetifTxRequest, NetifTxResponse>.Attach((nint)txMap.Address, RingGeometry.PageSize, ResponseProducer(txMap));
            _rx = BackRing<NetifRxRequest, NetifRxResponse>.Attach((nint)rxMap.Address, RingGeometry.PageSize, ResponseProducer(rxMap));
        }
        _txStaging = new byte[TxStagingBytes];
        for (var i = 0; i < TxBatch; i++) _txBuffers[i] = PacketBuffer.Wrap(_txStaging, PacketBuffer.Headroom, 0);
        _rxPool = new PacketBufferPool(NetifLimits.MaxPacketSize + 64, RxQueueLarge);
    }

    public int Index { get; }
    public VifFrontendFeatures Features { get; }
    public bool SplitEventChannels => !ReferenceEquals(_txEvent, _rxEvent);
    public VifCredit Credit { get; } = new();

    /// <summary>
    /// Maps the queue's two ring pages and binds its event channels. Every failure (a bad grant ref, a
    /// port the frontend does not own) undoes what was done and is returned as a message.
    /// </summary>
    public static VifQueue? TryConnect(VifPort vif, ForeignDomain foreign, HypercallClient hypercalls, VifFrontendFeatures features,
        VifQueueRings rings, out string error)
    {
        GrantMapping txMap = default, rxMap = default;
        EventChannel? txEvent = null, rxEvent = null;
        try
        {
            var status = foreign.Map(rings.TxRingRef, readOnly: false, out txMap);
            if (status != GrantStatus.Okay)
            {
                error = $"queue {rings.Queue}: mapping tx-ring-ref {rings.TxRingRef}: {status}";
                return null;
            }
            status = foreign.Map(rings.RxRingRef, readOnly: false, out rxMap);
            if (status != GrantStatus.Okay)
            {
                error = $"queue {rings.Queue}: mapping rx-ring-ref {rings.RxRingRef}: {status}";
                foreign.Unmap(txMap);
                return null;
            }
            if (!IndicesConsistent(txMap) || !IndicesConsistent(rxMap))
            {
                error = $"queue {rings.Queue}: ring indices claim more requests than the ring holds";
                foreign.Unmap(txMap);
                foreign.Unmap(rxMap);
                return null;
            }
            txEvent = hypercalls.BindInterdomain(foreign.Domid, rings.TxEventChannel);
            rxEvent = rings.SplitEventChannels ? hypercalls.BindInterdomain(foreign.Domid, rings.RxEventChannel) : txEvent;
            error = "";
            return new VifQueue(vif, rings.Queue, foreign, hypercalls, features, txMap, rxMap, txEvent, rxEvent);
        }
        catch (Exception e) when (e is HypercallException or IOException or InvalidDataException)
        {
            error = $"queue {rings.Queue}: binding event channel: {e.Message}";
            Release(hypercalls, txEvent);
            if (rxEvent != txEvent) Release(hypercalls, rxEvent);
            if (txMap.IsMapped) foreign.Unmap(txMap);
            if (rxMap.IsMapped) foreign.Unmap(rxMap);
            return null;
        }
    }

    private static unsafe uint ResponseProducer(in GrantMapping ring) =>
        Volatile.Read(ref *(uint*)(ring.Address + SharedRingHeader.RspProdOffset));

    /// <summary>Linux's connect-time check: <c>req_prod - rsp_prod</c> must fit in the ring (both rings have 256 slots).</summary>
    private static unsafe bool IndicesConsistent(in GrantMapping ring)
    {
        var reqProd = Volatile.Read(ref *(uint*)(ring.Address + SharedRingHeader.ReqProdOffset));
        return reqProd - ResponseProducer(ring) <= NetifLimits.TxRingSlots;
    }

    public void Start()
    {
        var name = $"{_vif.Name}-q{Index}";
        _txThread = new Thread(TxLoop) { IsBackground = true, Name = name + "-tx" };
        _txThread.Start();
        if (SplitEventChannels)
        {
            _rxThread = new Thread(RxLoop) { IsBackground = true, Name = name + "-rx" };
            _rxThread.Start();
        }
    }

    /// <summary>
    /// The frontend broke the protocol: stop serving this queue at once and ask for the vif to be
    /// disconnected (one log line, by the vif). Safe from any thread, any number of times.
    /// </summary>
    private void Fail(string reason)
    {
        _stopping = true;
        if (Interlocked.Exchange(ref _failed, 1) != 0) return;
        _vif.OnQueueFailed(this, reason);
    }

    public bool Failed => Volatile.Read(ref _failed) != 0;

    /// <summary>
    /// Stops the threads and releases the rings and ports. The caller has made sure the bridge no
    /// longer transmits to this queue. Idempotent (XSA-350).
    /// </summary>
    public void Stop()
    {
        _stopping = true;
        foreach (var t in new[] { _txThread, _rxThread })
            if (t is not null && t != Thread.CurrentThread) t.Join();
        _txThread = _rxThread = null;
        lock (_rxGate)
        {
            while (_rxPendingCount > 0)
            {
                _rxPending[_rxPendingHead].Return();
                _rxPending[_rxPendingHead] = null!;
                _rxPendingHead = (_rxPendingHead + 1) % RxQueueMax;
                _rxPendingCount--;
                _vif.Counters.CountDrop(DropReason.LinkDown);
            }
            if (_released) return;
            _released = true;
        }
        Release(_hypercalls, _txEvent);
        if (SplitEventChannels) Release(_hypercalls, _rxEvent);
        _foreign.Unmap(_txMap);
        _foreign.Unmap(_rxMap);
    }

    private bool _released;

    private static void Release(HypercallClient hypercalls, EventChannel? channel)
    {
        if (channel is null) return;
        try
        {
            hypercalls.Close(channel.Port);
        }
        catch (Exception e) when (e is HypercallException or IOException or InvalidDataException)
        {
            // The port may already be gone with its peer; the endpoint is closed either way.
        }
        channel.Dispose();
    }

    /// <summary>
    /// Waits for an event on <paramref name="channel"/>. A frontend that notifies without giving work,
    /// again and again, is slowed down rather than served at full speed (XSA-332: the channel is
    /// re-armed only after a pause). A channel whose peer has gone is polled slowly: the xenbus layer
    /// decides what happens to the device.
    /// </summary>
    private void WaitForEvent(EventChannel channel, ref int spurious, int timeoutMs)
    {
        if (channel.PeerClosed)
        {
            Thread.Sleep(Math.Min(timeoutMs, IdleWaitMs));
            return;
        }
        if (spurious > SpuriousBurst)
        {
            Interlocked.Increment(ref _vif.Stats.EventsRateLimited);
            Thread.Sleep(1);
        }
        if (channel.Wait(timeoutMs)) spurious++;
    }
}
