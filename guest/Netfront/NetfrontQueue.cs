using System.Runtime.CompilerServices;
using XenIo.Guest.Interop;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Events;
using XenIo.Hypervisor.Hypercalls;
using XenIo.Hypervisor.Rings;
using XenIo.Net.Frames;
using XenIo.Net.Tap;

namespace XenIo.Guest.Netfront;

/// <summary>Frame and byte counts of one vif, as <c>ip -s link</c> would show them for a Linux netfront.</summary>
public sealed class NetfrontCounters
{
    public long TxPackets;
    public long TxBytes;
    public long TxDropped;
    public long TxErrors;
    public long RxPackets;
    public long RxBytes;
    public long RxDropped;
}

/// <summary>
/// One connection of a vif to its backend (Linux's <c>netfront_queue</c>): the TX and RX shared rings,
/// their granted buffer pages and the event channel(s), and the two threads that move frames.
/// <list type="bullet">
/// <item>TX: the TAP is read with readv straight into free TX pages granted read-only to the backend
/// (the kernel's copy is the only one), then <see cref="TxPacket"/> turns the frame into slots.
/// Requests are pushed per batch; the backend is notified only when
/// <c>RING_PUSH_REQUESTS_AND_CHECK_NOTIFY</c> says so.</item>
/// <item>RX: every RX slot always holds a posted page granted writable to the backend; responses are
/// reassembled by <see cref="RxAssembler"/> and written to the TAP with writev straight from those
/// pages, then the slots are posted again.</item>
/// </list>
/// A new connection (backend restart) builds a new queue; nothing here outlives it but the TAP.
/// </summary>
internal sealed class NetfrontQueue
{
    public const int RingSize = NetifLimits.TxRingSlots;
    private const int TxRingPage = 0;
    private const int RxRingPage = 1;
    private const int FirstTxPage = 2;
    private const int FirstRxPage = FirstTxPage + RingSize;
    private const int Pages = FirstRxPage + RingSize;
    /// <summary>
    /// Slots written before they are pushed: small frames are published in batches, a GSO frame (17
    /// slots) at once, so the backend never waits for a ring's worth. Pushing is a store and a barrier;
    /// the notification is still only sent when the backend asked for one.
    /// </summary>
    private const int TxPushSlots = 16;

    /// <summary>Finished rx slots gathered before they are posted again in one push.</summary>
    private const int RxRefillBatch = 32;
    private const int IdleWaitMs = 250;
    private const int HeadBytes = 256;

    private readonly GuestDomain _domain;
    private readonly TapDevice _tap;
    private readonly Action<string> _log;
    private readonly GrantedPages _pages;
    private readonly NetfrontCounters _counters;
    private FrontRing<NetifTxRequest, NetifTxResponse> _tx;
    private FrontRing<NetifRxRequest, NetifRxResponse> _rx;
    private EventChannel? _txEvent;
    private EventChannel? _rxEvent;
    private readonly ManualResetEventSlim _txWake = new(false);
    private readonly TaskCompletionSource<string> _failed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ushort[] _freeIds = new ushort[RingSize];
    private readonly bool[] _inFlight = new bool[RingSize];
    private int _freeCount;
    private readonly RxAssembler _assembler = new(RingSize);
    private readonly byte[] _txHeader = GC.AllocateArray<byte>(VirtioNetHeader.Size, pinned: true);
    private readonly byte[] _rxHeader = GC.AllocateArray<byte>(VirtioNetHeader.Size, pinned: true);
    private readonly byte[] _rxHead = GC.AllocateArray<byte>(HeadBytes, pinned: true);
    private TxFeatures _features;
    private Thread? _txThread;
    private Thread? _rxThread;
    private volatile bool _stop;
    private volatile bool _txWaiting;
    private int _logged;

    private NetfrontQueue(GuestDomain domain, ushort backend, TapDevice tap, NetfrontCounters counters, Action<string> log)
    {
        _domain = domain;
        BackendId = backend;
        _tap = tap;
        _counters = counters;
        _log = log;
        _pages = new GrantedPages(domain, Pages);
    }

    public ushort BackendId { get; }

    public uint TxRingRef => _pages.Gref(TxRingPage);

    public uint RxRingRef => _pages.Gref(RxRingPage);

    public uint TxPort => _txEvent!.Port;

    public uint RxPort => _rxEvent!.Port;

    public bool SplitEventChannels => !ReferenceEquals(_txEvent, _rxEvent);

    /// <summary>Completes with the reason when the data path stops by itself (backend gone, ring broken).</summary>
    public Task<string> Failed => _failed.Task;

    /// <summary>
    /// Grants the rings and buffers to <paramref name="backend"/>, initialises both rings, posts every RX
    /// slot and allocates the event channel(s) (xennet_connect's set-up before talk_to_netback writes the keys).
    /// </summary>
    public static NetfrontQueue Create(GuestDomain domain, ushort backend, TapDevice tap, bool splitEvents, NetfrontCounters counters, Action<string> log)
    {
        var queue = new NetfrontQueue(domain, backend, tap, counters, log);
        try
        {
            queue.Setup(splitEvents);
            return queue;
        }
        catch
        {
            queue.ReleaseAsync(TimeSpan.Zero).GetAwaiter().GetResult();
            throw;
        }
    }

    private unsafe void Setup(bool splitEvents)
    {
        _pages.Add(BackendId, readOnly: false);
        _pages.Add(BackendId, readOnly: false);
        for (var i = 0; i < RingSize; i++) _pages.Add(BackendId, readOnly: true);
        for (var i = 0; i < RingSize; i++) _pages.Add(BackendId, readOnly: false);
        _tx = FrontRing<NetifTxRequest, NetifTxResponse>.Init((nint)_pages.Address(TxRingPage), TxPacket.PageSize);
        _rx = FrontRing<NetifRxRequest, NetifRxResponse>.Init((nint)_pages.Address(RxRingPage), TxPacket.PageSize);
        for (var i = RingSize - 1; i >= 0; i--) _freeIds[_freeCount++] = (ushort)i;
        PostRx(RingSize);
        _rx.PushRequests();
        _txEvent = _domain.Hypercalls.AllocUnbound(BackendId);
        _rxEvent = splitEvents ? _domain.Hypercalls.AllocUnbound(BackendId) : _txEvent;
    }

    /// <summary>Starts moving frames once the backend is Connected, and kicks it once (xennet_connect's notify).</summary>
    public void Start(TxFeatures features)
    {
        _features = features;
        _txThread = new Thread(RunTx, 256 * 1024) { IsBackground = true, Name = $"netfront {_tap.Name} tx" };
        _rxThread = new Thread(RunRx, 256 * 1024) { IsBackground = true, Name = $"netfront {_tap.Name} rx" };
        _txThread.Start();
        _rxThread.Start();
        _txEvent!.Notify();
        if (SplitEventChannels) _rxEvent!.Notify();
    }

    /// <summary>Stops both threads (within one idle wait).</summary>
    public void Stop()
    {
        _stop = true;
        _txWake.Set();
        if (_txThread is { } t && t != Thread.CurrentThread) t.Join();
        if (_rxThread is { } r && r != Thread.CurrentThread) r.Join();
    }

    /// <summary>
    /// Closes the event channels (the backend sees end of file and unmaps), then ends every grant,
    /// retrying while the backend still holds a page, and frees the pages.
    /// </summary>
    public async Task ReleaseAsync(TimeSpan patience)
    {
        Stop();
        var channels = SplitEventChannels ? new[] { _txEvent, _rxEvent } : new[] { _txEvent };
        foreach (var channel in channels)
        {
            if (channel is null) continue;
            try { _domain.Hypercalls.Close(channel.Port); }
            catch (Exception e) when (e is HypercallException or IOException) { }
            channel.Dispose();
        }
        _txEvent = _rxEvent = null;
        await _pages.ReleaseAsync(patience, _log).ConfigureAwait(false);
    }

    private void Fail(string reason)
    {
        if (_failed.TrySetResult(reason)) _stop = true;
    }

    /// <summary>One log line per kind of backend misbehaviour per connection: true the first time only (format the line after).</summary>
    private bool FirstTime(int bit) => (Interlocked.Or(ref _logged, 1 << bit) & (1 << bit)) == 0;

    // ---- TX: TAP → ring ------------------------------------------------------------------------

    private void RunTx()
    {
        try { TxLoop(); }
        catch (Exception e) { Fail($"tx: {e.Message}"); }
    }

    private unsafe void TxLoop()
    {
        var iov = stackalloc IoVec[1 + TxPacket.MaxPages];
        var ids = stackalloc ushort[TxPacket.MaxPages];
        var grefs = stackalloc uint[TxPacket.MaxPages];
        var slots = stackalloc NetifTxRequest[TxPacket.MaxSlots];
        var poll = new PollFd { Fd = _tap.Fd, Events = Libc.POLLIN };
        var pending = 0;
        fixed (byte* header = _txHeader)
        {
            iov[0] = new IoVec { Base = header, Length = VirtioNetHeader.Size };
            while (!_stop)
            {
                ReapTx();
                if (_tx.IsBroken)
                {
                    Fail($"the backend broke the tx ring ({_tx.Error})");
                    return;
                }
                if (_tx.FreeRequests < TxPacket.MaxSlots || _freeCount < TxPacket.MaxPages)
                {
                    pending = Push(pending);
                    _txWake.Reset();
                    if (!_tx.FinalCheckForResponses()) WaitTx();
                    continue;
                }
                for (var k = 0; k < TxPacket.MaxPages; k++)
                {
                    var id = _freeIds[_freeCount - 1 - k];
                    ids[k] = id;
                    grefs[k] = _pages.Gref(FirstTxPage + id);
                    iov[1 + k] = new IoVec { Base = _pages.Address(FirstTxPage + id), Length = TxPacket.PageSize };
                }
                var n = Libc.ReadV(_tap.Fd, iov, 1 + TxPacket.MaxPages);
                if (n < 0)
                {
                    var errno = Libc.Errno;
                    if (errno == Libc.EINTR) continue;
                    if (errno != Libc.EAGAIN) { Fail($"reading {_tap.Name}: errno {errno}"); return; }
                    pending = Push(pending);
                    Libc.Poll(&poll, 1, IdleWaitMs);
                    continue;
                }
                if (n < VirtioNetHeader.Size) continue;
                var length = (int)n - VirtioNetHeader.Size;
                VirtioNetHeader.TryRead(_txHeader, out var vnet);
                var verdict = TxPacket.Build(vnet, length, _features, new ReadOnlySpan<ushort>(ids, TxPacket.MaxPages),
                    new ReadOnlySpan<uint>(grefs, TxPacket.MaxPages), new Span<NetifTxRequest>(slots, TxPacket.MaxSlots), out var count);
                if (verdict != TxVerdict.Ok)
                {
                    _counters.TxDropped++;
                    continue;
                }
                var pages = TxPacket.PagesFor(length);
                for (var k = 0; k < pages; k++) _inFlight[ids[k]] = true;
                _freeCount -= pages;
                for (var s = 0; s < count; s++) _tx.TryWriteRequest(slots[s]);
                _counters.TxPackets++;
                _counters.TxBytes += length;
                pending += count;
                if (pending >= TxPushSlots) pending = Push(pending);
            }
        }
    }

    private int Push(int pending)
    {
        if (pending > 0 && _tx.PushRequests()) _txEvent!.Notify();
        return 0;
    }

    private void WaitTx()
    {
        if (SplitEventChannels)
        {
            _txEvent!.Wait(IdleWaitMs);
            if (_txEvent.PeerClosed) Fail("the backend closed the tx event channel");
        }
        else
        {
            // The RX thread owns the shared channel; it wakes us after every pass while we wait, since
            // a busy RX side may not wait on the channel (and so not see a TX notification) for long.
            _txWaiting = true;
            _txWake.Wait(IdleWaitMs);
            _txWaiting = false;
        }
    }

    /// <summary>Takes TX responses and frees their pages' ids; NULL responses (extra info slots) carry nothing.</summary>
    private void ReapTx()
    {
        while (_tx.TryConsumeResponse(out var response))
        {
            if (response.Status == NetifStatus.Null) continue;
            if (response.Id >= RingSize || !_inFlight[response.Id])
            {
                if (FirstTime(0)) _log($"{_tap.Name}: tx response for id {response.Id}, which we did not post; ignored");
                continue;
            }
            _inFlight[response.Id] = false;
            _freeIds[_freeCount++] = response.Id;
            if (response.Status != NetifStatus.Okay) _counters.TxErrors++;
        }
    }

    // ---- RX: ring → TAP ------------------------------------------------------------------------

    private void RunRx()
    {
        try { RxLoop(); }
        catch (Exception e) { Fail($"rx: {e.Message}"); }
    }

    private unsafe void RxLoop()
    {
        var iov = stackalloc IoVec[1 + RxAssembler.MaxDataSlots];
        fixed (byte* header = _rxHeader)
        {
            iov[0] = new IoVec { Base = header, Length = VirtioNetHeader.Size };
            // Ring index up to which every slot belongs to a finished packet (and may be posted again).
            var done = _rx.ResponseConsumer;
            while (!_stop)
            {
                while (_rx.TryConsumeResponse(out var response))
                {
                    var index = _rx.ResponseConsumer - 1;
                    var step = _assembler.Add(index, response);
                    if (step == RxStep.More) continue;
                    if (step == RxStep.Packet) Deliver(iov);
                    else DropRx();
                    done = _rx.ResponseConsumer;
                    if (done + RingSize - _rx.RequestProducerPrivate >= RxRefillBatch) RefillRx(done);
                }
                RefillRx(done);
                if (_txWaiting) _txWake.Set();
                if (_rx.IsBroken)
                {
                    Fail($"the backend broke the rx ring ({_rx.Error})");
                    return;
                }
                if (_rx.FinalCheckForResponses()) continue;
                _rxEvent!.Wait(IdleWaitMs);
                if (!SplitEventChannels) _txWake.Set();
                if (_rxEvent.PeerClosed)
                {
                    Fail("the backend closed its event channel");
                    return;
                }
            }
        }
    }

    private void DropRx()
    {
        _counters.RxDropped++;
        var reason = _assembler.Reason;
        if (FirstTime(1 + (int)reason)) _log($"{_tap.Name}: rx packet dropped: {reason} (slots {_assembler.Slots}, {_assembler.Length} bytes)");
    }

    private unsafe void Deliver(IoVec* iov)
    {
        var segments = _assembler.Segments;
        var head = _rxHead.AsSpan(0, Math.Min(HeadBytes, _assembler.Length));
        var copied = 0;
        for (var i = 0; i < segments.Length && copied < head.Length; i++)
        {
            var take = Math.Min(segments[i].Length, head.Length - copied);
            new ReadOnlySpan<byte>(SegmentAddress(segments[i]), take).CopyTo(head[copied..]);
            copied += take;
        }
        if (!RxAssembler.TryToVirtio(_assembler.Flags, _assembler.Gso, _assembler.GsoSize, head, out var vnet))
        {
            _counters.RxDropped++;
            if (FirstTime(12)) _log($"{_tap.Name}: rx packet dropped: its headers do not match its checksum or GSO flags");
            return;
        }
        vnet.Write(_rxHeader);
        for (var i = 0; i < segments.Length; i++)
            iov[1 + i] = new IoVec { Base = SegmentAddress(segments[i]), Length = segments[i].Length };
        var n = Libc.WriteV(_tap.Fd, iov, 1 + segments.Length);
        if (n < 0)
        {
            _counters.RxDropped++;
            return;
        }
        _counters.RxPackets++;
        _counters.RxBytes += _assembler.Length;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private unsafe byte* SegmentAddress(in RxSegment segment) =>
        _pages.Address(FirstRxPage + (int)(segment.Index & (RingSize - 1))) + segment.Offset;

    /// <summary>Posts again every slot whose packet is finished, so the ring stays full.</summary>
    private void RefillRx(uint done)
    {
        var post = (int)(done + RingSize - _rx.RequestProducerPrivate);
        if (post <= 0) return;
        PostRx(post);
        if (_rx.PushRequests()) _rxEvent!.Notify();
    }

    /// <summary>Slot i always carries page i: an rx response comes back in the slot of its request.</summary>
    private void PostRx(int count)
    {
        for (var i = 0; i < count; i++)
        {
            var id = (ushort)(_rx.RequestProducerPrivate & (RingSize - 1));
            _rx.TryWriteRequest(new NetifRxRequest { Id = id, Gref = _pages.Gref(FirstRxPage + id) });
        }
    }
}
