using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Grants;
using XenIo.Net.Frames;
using XenIo.VSwitch.Core;

namespace XenIo.Netback.Vif;

// RX: frames the switch sends to the guest. Each frame is grant-copied from the sender's buffer
// straight into the buffers the frontend posted (one 4 KiB page per slot, more_data between them,
// the GSO extra info in the slot after the first). When the frontend has not posted enough, the frame
// waits in a bounded queue (XSA-392) and is placed when the frontend posts more and notifies.
internal sealed partial class VifQueue
{
    /// <summary>Frames held for a frontend that has not posted RX buffers; more are dropped.</summary>
    public const int RxQueueMax = RxQueueSmall + RxQueueLarge;

    /// <summary>
    /// The queue is bounded in bytes as well as frames (Linux's rx_queue_max, XSA-392): up to 128 frames
    /// of at most <see cref="RxSmallFrame"/> bytes and 8 larger (GSO) ones, about 800 KiB per queue.
    /// </summary>
    private const int RxQueueSmall = 128;
    private const int RxQueueLarge = 8;
    private const int RxSmallFrame = 2048;

    /// <summary>A frontend whose RX buffers fail grant copy this many frames in a row is disconnected.</summary>
    public const int MaxConsecutiveBadRxGrants = 64;

    private const int MaxRxSlots = (NetifLimits.MaxPacketSize + EtherTypes.VlanTagLength + RingGeometry.PageSize - 1) / RingGeometry.PageSize + 2;

    private readonly Lock _rxGate = new();
    private readonly PacketBufferPool _rxPool;
    private readonly PacketBufferPool _rxSmallPool = new(RxSmallFrame, RxQueueSmall);
    private readonly PacketBuffer[] _rxPending = new PacketBuffer[RxQueueMax];
    private int _rxPendingHead;
    private int _rxPendingCount;
    private readonly GrantCopyOp[] _rxOps = new GrantCopyOp[MaxRxSlots];
    private readonly NetifRxRequest[] _rxRequests = new NetifRxRequest[MaxRxSlots];
    private int _consecutiveBadRxGrants;

    private enum Placement
    {
        Placed,
        NoRoom,
        Failed,
    }

    public int RxPendingCount => Volatile.Read(ref _rxPendingCount);

    /// <summary>
    /// Called by the bridge (under its lock) with a frame for the guest. The frame is placed in the
    /// frontend's buffers now, or queued behind frames already waiting, or dropped when the queue is full.
    /// </summary>
    public DropReason Transmit(ReadOnlySpan<byte> frame, in FrameMetadata metadata)
    {
        lock (_rxGate)
        {
            if (_stopping) return DropReason.LinkDown;
            if (!CanCarry(frame.Length, metadata)) return DropReason.TooBig;
            if (_rxPendingCount > 0) DrainRxLocked();
            if (_rxPendingCount == 0)
            {
                var placed = PlaceLocked(frame, metadata);
                if (placed != Placement.NoRoom && !_rx.IsBroken && _rx.PushResponses()) _rxEvent.Notify();
                if (placed == Placement.Placed) return DropReason.None;
                if (placed == Placement.Failed) return _stopping ? DropReason.LinkDown : DropReason.TxError;
            }
            if (_rxPendingCount == RxQueueMax || (frame.Length <= RxSmallFrame ? _rxSmallPool : _rxPool).Rent() is not { } buffer)
            {
                Interlocked.Increment(ref _vif.Stats.RxQueueDrops);
                return DropReason.QueueFull;
            }
            buffer.TrySet(frame, metadata);
            _rxPending[(_rxPendingHead + _rxPendingCount) % RxQueueMax] = buffer;
            _rxPendingCount++;
            Interlocked.Increment(ref _vif.Stats.RxQueued);
            ArmRxNotification();
            return DropReason.None;
        }
    }

    private bool CanCarry(int length, in FrameMetadata metadata)
    {
        if (length > NetifLimits.MaxPacketSize + EtherTypes.VlanTagLength) return false;
        return Features.Sg || length <= RingGeometry.PageSize;
    }

    /// <summary>Asks the frontend to notify us when it posts the next RX request (<c>req_event = req_cons + 1</c>).</summary>
    private void ArmRxNotification()
    {
        lock (_rxGate)
        {
            if (_rx.FinalCheckForRequests() && _rxPendingCount > 0) DrainRxLocked();
        }
    }

    /// <summary>Places queued frames while the frontend has buffers for them. True when any was placed.</summary>
    private bool DrainRx()
    {
        lock (_rxGate) return DrainRxLocked();
    }

    private bool DrainRxLocked()
    {
        // Reading req_prod is what catches an RX ring the frontend broke, even with nothing to place.
        if (_rx.UnconsumedRequests == 0 && _rx.IsBroken)
        {
            Fail($"rx ring: {_rx.Error}");
            return false;
        }
        var any = false;
        while (_rxPendingCount > 0 && !_stopping)
        {
            var buffer = _rxPending[_rxPendingHead];
            var placed = PlaceLocked(buffer.Frame, buffer.Metadata);
            if (placed == Placement.NoRoom) break;
            _rxPending[_rxPendingHead] = null!;
            _rxPendingHead = (_rxPendingHead + 1) % RxQueueMax;
            _rxPendingCount--;
            buffer.Return();
            any = true;
            if (placed == Placement.Failed) _vif.Counters.CountDrop(DropReason.TxError);
            else
            {
                // Queued frames were counted as sent when queued; nothing more to count.
            }
        }
        if (any && _rx.PushResponses()) _rxEvent.Notify();
        return any;
    }

    /// <summary>Copies one frame into posted buffers and writes its responses (not yet pushed).</summary>
    private Placement PlaceLocked(ReadOnlySpan<byte> frame, in FrameMetadata metadata)
    {
        var length = frame.Length;
        var gso = metadata.IsGso;
        var dataSlots = Math.Max(1, (length + RingGeometry.PageSize - 1) / RingGeometry.PageSize);
        var total = dataSlots + (gso ? 1 : 0);
        if (_rx.UnconsumedRequests < total)
        {
            if (_rx.IsBroken) Fail($"rx ring: {_rx.Error}");
            return _stopping ? Placement.Failed : Placement.NoRoom;
        }
        for (var i = 0; i < total; i++) _rx.TryConsumeRequest(out _rxRequests[i]);

        // Data slot k goes in request k, except that the GSO extra takes request 1.
        var offset = 0;
        for (var k = 0; k < dataSlots; k++)
        {
            var request = _rxRequests[k == 0 || !gso ? k : k + 1];
            var chunk = Math.Min(RingGeometry.PageSize, length - offset);
            _rxOps[k] = GrantCopyOp.ToGrant((uint)offset, _domid, request.Gref, 0, (ushort)chunk);
            offset += chunk;
        }
        // The span is only read from: grant copy's local side is the source here.
        var local = MemoryMarshal.CreateSpan(ref MemoryMarshal.GetReference(frame), length);
        _foreign.Copy(_rxOps.AsSpan(0, dataSlots), local);

        var bad = false;
        offset = 0;
        var flags = VifOffload.RxFlags(metadata) | (gso ? NetRxFlags.ExtraInfo : NetRxFlags.None);
        for (var k = 0; k < dataSlots; k++)
        {
            var request = _rxRequests[k == 0 || !gso ? k : k + 1];
            var chunk = Math.Min(RingGeometry.PageSize, length - offset);
            offset += chunk;
            var ok = _rxOps[k].Status == GrantStatus.Okay;
            bad |= !ok;
            var response = new NetifRxResponse
            {
                Id = request.Id,
                Offset = 0,
                Flags = (k == 0 ? flags : NetRxFlags.None) | (k < dataSlots - 1 ? NetRxFlags.MoreData : NetRxFlags.None),
                Status = ok ? (short)chunk : NetifStatus.Error,
            };
            _rx.TryWriteResponse(response);
            if (k == 0 && gso)
            {
                var extra = VifOffload.RxGsoExtra(metadata);
                _rx.TryWriteResponse(Unsafe.As<NetifExtraInfo, NetifRxResponse>(ref extra));
            }
        }
        if (gso) Interlocked.Increment(ref _vif.Stats.RxGsoFrames);
        if (!bad)
        {
            _consecutiveBadRxGrants = 0;
            return Placement.Placed;
        }
        Interlocked.Increment(ref _vif.Stats.RxBadGrants);
        if (++_consecutiveBadRxGrants >= MaxConsecutiveBadRxGrants)
            Fail($"rx: {MaxConsecutiveBadRxGrants} frames in a row whose posted buffers failed grant copy");
        return Placement.Failed;
    }

    private void RxLoop()
    {
        var spurious = 0;
        try
        {
            while (!_stopping)
            {
                if (DrainRx())
                {
                    spurious = 0;
                    continue;
                }
                if (_rx.IsBroken)
                {
                    Fail($"rx ring: {_rx.Error}");
                    return;
                }
                if (RxPendingCount > 0) ArmRxNotification();
                WaitForEvent(_rxEvent, ref spurious, RxPendingCount > 0 && !Features.RxNotify ? 10 : IdleWaitMs);
            }
        }
        catch (Exception e)
        {
            Fail($"rx thread: {e.GetType().Name}: {e.Message}");
        }
    }
}
