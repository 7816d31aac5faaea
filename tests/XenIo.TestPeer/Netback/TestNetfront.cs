using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Events;
using XenIo.Hypervisor.Rings;

namespace XenIo.TestPeer.Netback;

/// <summary>
/// A small netfront for tests and benchmarks (the real one lives in guest/): one queue, one page per
/// slot granted once to dom0 (TX read-only, RX writable), rings initialised by us, event channels
/// allocated unbound for dom0. It plays an honest frontend through <see cref="TrySend"/>,
/// <see cref="PostRx"/> and <see cref="TryReceive"/>, and a hostile one through the raw slot methods.
/// </summary>
public sealed unsafe class TestNetfront : IDisposable
{
    public const int Slots = 256;
    private const int Page = RingGeometry.PageSize;
    private readonly GuestDomain _guest;
    private readonly uint _txRingFrame;
    private readonly uint _rxRingFrame;
    private readonly uint[] _txFrames = new uint[Slots];
    private readonly uint[] _rxFrames = new uint[Slots];
    private readonly Stack<ushort> _txFree = new(Slots);
    private readonly Stack<ushort> _rxFree = new(Slots);
    private readonly ushort[] _rxIdAt = new ushort[Slots];
    private readonly bool[] _txBusy = new bool[Slots];
    private FrontRing<NetifTxRequest, NetifTxResponse> _tx;
    private FrontRing<NetifRxRequest, NetifRxResponse> _rx;

    /// <param name="firstFreeFrame">Frames below this are the toolstack's (console and store pages of an agent-less domain).</param>
    public TestNetfront(GuestDomain guest, bool splitEventChannels, uint firstFreeFrame = 0)
    {
        _guest = guest;
        Split = splitEventChannels;
        while (guest.Pages.FreeFrames > 0)
        {
            var f = guest.Pages.Allocate();
            if (f >= firstFreeFrame)
            {
                guest.Pages.Free(f);
                break;
            }
        }
        _txRingFrame = guest.Pages.Allocate();
        _rxRingFrame = guest.Pages.Allocate();
        TxRingRef = guest.GrantTable.GrantAccess(DomainIds.Dom0, _txRingFrame, readOnly: false);
        RxRingRef = guest.GrantTable.GrantAccess(DomainIds.Dom0, _rxRingFrame, readOnly: false);
        TxGrefs = new uint[Slots];
        RxGrefs = new uint[Slots];
        for (var i = 0; i < Slots; i++)
        {
            _txFrames[i] = guest.Pages.Allocate();
            TxGrefs[i] = guest.GrantTable.GrantAccess(DomainIds.Dom0, _txFrames[i], readOnly: true);
            _rxFrames[i] = guest.Pages.Allocate();
            RxGrefs[i] = guest.GrantTable.GrantAccess(DomainIds.Dom0, _rxFrames[i], readOnly: false);
        }
        Reset();
    }

    public bool Split { get; }
    public ushort Domid => _guest.Domid;
    public uint TxRingRef { get; }
    public uint RxRingRef { get; }
    public uint[] TxGrefs { get; }
    public uint[] RxGrefs { get; }
    public EventChannel TxEvent { get; private set; } = null!;
    public EventChannel RxEvent { get; private set; } = null!;
    public long TxErrors { get; private set; }
    public long TxResponses { get; private set; }

    /// <summary>Fresh rings and event channels (a frontend starting over after its backend closed).</summary>
    public void Reset()
    {
        TxEvent?.Dispose();
        if (Split) RxEvent?.Dispose();
        _tx = FrontRing<NetifTxRequest, NetifTxResponse>.Init(PageAddress(_txRingFrame), Page);
        _rx = FrontRing<NetifRxRequest, NetifRxResponse>.Init(PageAddress(_rxRingFrame), Page);
        TxEvent = _guest.Hypercalls.AllocUnbound(DomainIds.Dom0);
        RxEvent = Split ? _guest.Hypercalls.AllocUnbound(DomainIds.Dom0) : TxEvent;
        _txFree.Clear();
        _rxFree.Clear();
        Array.Clear(_txBusy);
        for (var i = Slots - 1; i >= 0; i--)
        {
            _txFree.Push((ushort)i);
            _rxFree.Push((ushort)i);
        }
    }

    /// <summary>
    /// Keeps the rings and ports but takes new endpoints for the ports (after the backend's process died
    /// and ours saw end of file), as a frontend that resumes on its old rings does.
    /// </summary>
    public void ReopenEvents()
    {
        var tx = _guest.Hypercalls.ReopenEndpoint(TxEvent.Port);
        var rx = Split ? _guest.Hypercalls.ReopenEndpoint(RxEvent.Port) : tx;
        TxEvent.Dispose();
        if (Split) RxEvent.Dispose();
        TxEvent = tx;
        RxEvent = rx;
    }

    /// <summary>The keys netfront publishes in its device directory (before it switches to Connected).</summary>
    public Dictionary<string, string> FrontendKeys(bool gso = true, bool multicastControl = false)
    {
        var keys = new Dictionary<string, string>
        {
            ["tx-ring-ref"] = TxRingRef.ToString(),
            ["rx-ring-ref"] = RxRingRef.ToString(),
            ["request-rx-copy"] = "1",
            ["feature-rx-notify"] = "1",
            ["feature-sg"] = "1",
            ["feature-gso-tcpv4"] = gso ? "1" : "0",
            ["feature-gso-tcpv6"] = gso ? "1" : "0",
        };
        if (Split)
        {
            keys["event-channel-tx"] = TxEvent.Port.ToString();
            keys["event-channel-rx"] = RxEvent.Port.ToString();
        }
        else
        {
            keys["event-channel"] = TxEvent.Port.ToString();
        }
        if (multicastControl) keys["request-multicast-control"] = "1";
        return keys;
    }

    private nint PageAddress(uint frame) => (nint)Unsafe.AsPointer(ref MemoryMarshal.GetReference(_guest.Memory.Page(frame)));

    public Span<byte> TxPage(int index) => _guest.Memory.Page(_txFrames[index]);

    // ---- honest frontend ------------------------------------------------------------------------

    /// <summary>
    /// Queues one frame in slots of at most <paramref name="fragment"/> bytes (tiny fragments split the
    /// headers), with optional GSO extra info; pushes and notifies. False when slots are short.
    /// </summary>
    public bool TrySend(ReadOnlySpan<byte> frame, NetTxFlags flags = NetTxFlags.None, NetifExtraInfo? gso = null, int fragment = Page, bool push = true)
    {
        var slots = Math.Max(1, (frame.Length + fragment - 1) / fragment);
        var needed = slots + (gso is null ? 0 : 1);
        if (_txFree.Count < slots || _tx.FreeRequests < needed) return false;
        var offset = 0;
        for (var s = 0; s < slots; s++)
        {
            var id = _txFree.Pop();
            _txBusy[id] = true;
            var chunk = Math.Min(fragment, frame.Length - offset);
            frame.Slice(offset, chunk).CopyTo(TxPage(id));
            var f = s < slots - 1 ? NetTxFlags.MoreData : NetTxFlags.None;
            if (s == 0) f |= flags | (gso is null ? NetTxFlags.None : NetTxFlags.ExtraInfo);
            _tx.TryWriteRequest(new NetifTxRequest { Gref = TxGrefs[id], Offset = 0, Flags = f, Id = id, Size = (ushort)(s == 0 ? frame.Length : chunk) });
            if (s == 0 && gso is { } extra)
            {
                var e = extra;
                var raw = default(NetifTxRequest);
                Unsafe.As<NetifTxRequest, NetifExtraInfo>(ref raw) = e;
                _tx.TryWriteRequest(raw);
            }
            offset += chunk;
        }
        if (push) PushTx();
        return true;
    }

    public void PushTx()
    {
        if (_tx.PushRequests()) TxEvent.Notify();
    }

    /// <summary>Takes TX responses and frees their slots; returns how many were taken.</summary>
    public int ReapTx()
    {
        var n = 0;
        while (_tx.TryConsumeResponse(out var rsp))
        {
            n++;
            TxResponses++;
            if (rsp.Status == NetifStatus.Null) continue;
            if (rsp.Status != NetifStatus.Okay) TxErrors++;
            if (rsp.Id < Slots && _txBusy[rsp.Id])
            {
                _txBusy[rsp.Id] = false;
                _txFree.Push(rsp.Id);
            }
        }
        return n;
    }

    public int TxFree => _txFree.Count;
    public bool TxRingBroken => _tx.IsBroken;

    /// <summary>Posts up to <paramref name="count"/> RX buffers; notifies when the backend asked.</summary>
    public int PostRx(int count = Slots)
    {
        var posted = 0;
        while (posted < count && _rxFree.Count > 0 && _rx.FreeRequests > 0)
        {
            var id = _rxFree.Pop();
            _rxIdAt[_rx.RequestProducerPrivate & (Slots - 1)] = id;
            _rx.TryWriteRequest(new NetifRxRequest { Id = id, Gref = RxGrefs[id] });
            posted++;
        }
        if (posted > 0 && _rx.PushRequests()) RxEvent.Notify();
        return posted;
    }

    /// <summary>
    /// Takes one whole frame off the RX ring into <paramref name="into"/>: its slots (more_data), the
    /// GSO extra after the first. False when no complete frame is there yet.
    /// </summary>
    public bool TryReceive(Span<byte> into, out int length, out NetRxFlags flags, out NetifExtraInfo gso, out bool error)
    {
        length = 0;
        flags = NetRxFlags.None;
        gso = default;
        error = false;
        if (_rx.UnconsumedResponses == 0) return false;
        var first = true;
        while (true)
        {
            var index = _rx.ResponseConsumer;
            if (!_rx.TryConsumeResponse(out var rsp))
            {
                // The backend pushes a frame's slots together; a partial frame is a broken backend.
                throw new InvalidDataException("RX frame cut short");
            }
            var id = _rxIdAt[index & (Slots - 1)];
            if (rsp.Id != id) throw new InvalidDataException($"RX response id {rsp.Id} in the slot of request {id}");
            _rxFree.Push(id);
            if (rsp.Status < 0) error = true;
            else
            {
                _guest.Memory.Page(_rxFrames[id]).Slice(rsp.Offset, rsp.Status).CopyTo(into[length..]);
                length += rsp.Status;
            }
            if (first)
            {
                flags = rsp.Flags;
                first = false;
                if ((rsp.Flags & NetRxFlags.ExtraInfo) != 0)
                {
                    var extraIndex = _rx.ResponseConsumer;
                    if (!_rx.TryConsumeResponse(out var raw)) throw new InvalidDataException("RX extra info missing");
                    _rxFree.Push(_rxIdAt[extraIndex & (Slots - 1)]);
                    gso = Unsafe.As<NetifRxResponse, NetifExtraInfo>(ref raw);
                }
            }
            if ((rsp.Flags & NetRxFlags.MoreData) == 0) return true;
        }
    }

    /// <summary>Waits for an RX event after asking for one; true when there may be responses.</summary>
    public bool WaitRx(int timeoutMs)
    {
        if (_rx.FinalCheckForResponses()) return true;
        return RxEvent.Wait(timeoutMs);
    }

    public bool WaitTx(int timeoutMs)
    {
        if (_tx.FinalCheckForResponses()) return true;
        return TxEvent.Wait(timeoutMs);
    }

    // ---- hostile frontend -----------------------------------------------------------------------

    public int TxFreeRequests => _tx.FreeRequests;

    /// <summary>Writes any request into the next TX slot (not pushed).</summary>
    public bool WriteRawTx(in NetifTxRequest request) => _tx.TryWriteRequest(request);

    public bool WriteRawRx(in NetifRxRequest request)
    {
        _rxIdAt[_rx.RequestProducerPrivate & (Slots - 1)] = request.Id;
        return _rx.TryWriteRequest(request);
    }

    public void PushRx()
    {
        if (_rx.PushRequests()) RxEvent.Notify();
    }

    /// <summary>Drains RX responses without looking at them (a hostile frontend recycles blindly).</summary>
    public int DrainRx()
    {
        var n = 0;
        while (_rx.TryConsumeResponse(out _)) n++;
        return n;
    }

    /// <summary>Scribbles a producer index (<c>req_prod</c>) on a ring, as a broken frontend would.</summary>
    public void PokeRequestProducer(bool tx, uint value)
    {
        var frame = tx ? _txRingFrame : _rxRingFrame;
        var header = _guest.Memory.Page(frame);
        Volatile.Write(ref Unsafe.As<byte, uint>(ref header[SharedRingHeader.ReqProdOffset]), value);
        (tx ? TxEvent : RxEvent).Notify();
    }

    public uint TxResponseConsumer => _tx.ResponseConsumer;
    public uint RxRequestProducer => _rx.RequestProducerPrivate;

    public void Dispose()
    {
        TxEvent?.Dispose();
        if (Split) RxEvent?.Dispose();
    }
}
