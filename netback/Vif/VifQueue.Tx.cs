using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Grants;
using XenIo.Net.Frames;
using XenIo.VSwitch.Core;

namespace XenIo.Netback.Vif;

// TX: packets the guest sends. Linux's xenvif_tx_build_gops / xenvif_tx_submit, with grant copy for
// every byte (no mapping), so all headers land in one contiguous buffer whatever the frontend's
// fragmentation (XSA-423/432).
internal sealed partial class VifQueue
{
    /// <summary>Packets per grant-copy batch and per bridge call.</summary>
    private const int TxBatch = 32;

    /// <summary>XEN_NETBK_LEGACY_SLOTS_MAX: a packet of more data slots is dropped.</summary>
    public const int MaxSlots = NetifLimits.MinSlotsPerPacket;

    /// <summary>Linux's fatal_skb_slots default: a packet claiming more slots than this disconnects the frontend (19-20 are dropped).</summary>
    public const int FatalSlots = 20;

    /// <summary>One of each extra type at most (GSO, MCAST_ADD, MCAST_DEL, HASH).</summary>
    public const int MaxExtras = 4;

    /// <summary>A frontend whose packets fail grant copy this many times in a row is disconnected.</summary>
    public const int MaxConsecutiveBadGrants = 64;

    private const int MaxPacket = NetifLimits.MaxPacketSize;
    private const int TxStagingBytes = 192 * 1024;

    private readonly byte[] _txStaging;
    private readonly PacketBuffer[] _txBuffers = new PacketBuffer[TxBatch];
    private readonly PacketBuffer[] _txDeliver = new PacketBuffer[TxBatch];
    private readonly TxPacket[] _txPackets = new TxPacket[TxBatch];
    private readonly GrantCopyOp[] _txOps = new GrantCopyOp[TxBatch * FatalSlots];
    private readonly ushort[] _txResponseIds = new ushort[TxBatch * (FatalSlots + MaxExtras)];
    private readonly bool[] _txResponseNull = new bool[TxBatch * (FatalSlots + MaxExtras)];
    private readonly NetifTxRequest[] _txSlots = new NetifTxRequest[FatalSlots];
    private int _consecutiveBadGrants;

    private struct TxPacket
    {
        public int ResponseStart;
        public int ResponseCount;
        public int OpStart;
        public int OpCount;
        public short Status;
        public bool Forward;
        public int FrameOffset;
        public int Length;
        public NetTxFlags Flags;
        public bool HasGso;
        public NetifExtraInfo Gso;
    }

    private void TxLoop()
    {
        var spurious = 0;
        try
        {
            while (!_stopping)
            {
                var work = ProcessTx(out var creditWaitMs);
                if (_stopping) return;
                if (!SplitEventChannels) work |= DrainRx();
                if (work)
                {
                    spurious = 0;
                    continue;
                }
                if (creditWaitMs > 0)
                {
                    // Out of credit: the ring is not read until the next refill, whatever the frontend says.
                    Interlocked.Increment(ref _vif.Stats.CreditWaits);
                    Thread.Sleep(creditWaitMs);
                    continue;
                }
                if (_tx.FinalCheckForRequests()) continue;
                if (_tx.IsBroken)
                {
                    Fail($"tx ring: {_tx.Error}");
                    return;
                }
                var timeout = !SplitEventChannels && RxPendingCount > 0 && !Features.RxNotify ? 10 : IdleWaitMs;
                if (!SplitEventChannels && RxPendingCount > 0) ArmRxNotification();
                WaitForEvent(_txEvent, ref spurious, timeout);
            }
        }
        catch (Exception e)
        {
            // Our bug, not the guest's; still only this vif stops.
            Fail($"tx thread: {e.GetType().Name}: {e.Message}");
        }
    }

    /// <summary>
    /// Takes up to <see cref="TxBatch"/> packets off the TX ring, copies them with one grant-copy batch,
    /// hands the good ones to the bridge and answers every slot. True when anything was consumed.
    /// </summary>
    private bool ProcessTx(out int creditWaitMs)
    {
        creditWaitMs = 0;
        var count = 0;
        var responses = 0;
        var ops = 0;
        var staged = PacketBuffer.Headroom;
        while (count < TxBatch && staged + MaxPacket + 2 * PacketBuffer.Headroom <= _txStaging.Length)
        {
            if (_tx.UnconsumedRequests == 0) break;
            if (!Credit.TryTake(PeekFirstSize()))
            {
                creditWaitMs = Math.Max(1, Credit.MillisecondsUntilRefill);
                break;
            }
            ref var packet = ref _txPackets[count];
            if (!TakePacket(ref packet, ref responses, ref ops, ref staged))
            {
                // Fatal: answer what was taken so far is pointless, the vif is going away.
                return true;
            }
            count++;
        }
        if (_tx.IsBroken)
        {
            Fail($"tx ring: {_tx.Error}");
            return true;
        }
        if (count == 0) return false;

        if (ops > 0) _foreign.Copy(_txOps.AsSpan(0, ops), _txStaging);

        var deliver = 0;
        var anyBadGrant = false;
        for (var i = 0; i < count; i++)
        {
            ref var packet = ref _txPackets[i];
            if (!packet.Forward) continue;
            var ok = true;
            for (var o = packet.OpStart; o < packet.OpStart + packet.OpCount; o++)
                if (_txOps[o].Status != GrantStatus.Okay) ok = false;
            if (!ok)
            {
                packet.Status = NetifStatus.Error;
                packet.Forward = false;
                anyBadGrant = true;
                Interlocked.Increment(ref _vif.Stats.TxBadGrants);
                _vif.Counters.CountDrop(DropReason.Malformed);
                continue;
            }
            _consecutiveBadGrants = 0;
            var buffer = _txBuffers[i];
            buffer.SetFrame(packet.FrameOffset, packet.Length);
            var frame = _txStaging.AsSpan(packet.FrameOffset, packet.Length);
            if (!_vif.Filter.AllowsTx(frame))
            {
                Interlocked.Increment(ref _vif.Stats.TxSpoofDrops);
                _vif.Counters.CountDrop(DropReason.BadSource);
                continue;
            }
            var metadata = FrameMetadata.Plain(packet.Length);
            if (!VifOffload.TrySetup(frame, packet.Flags, packet.HasGso, packet.Gso, ref metadata))
            {
                Interlocked.Increment(ref _vif.Stats.TxBadOffload);
                _vif.Counters.CountDrop(DropReason.Malformed);
                continue;
            }
            if (metadata.IsGso) Interlocked.Increment(ref _vif.Stats.TxGsoFrames);
            buffer.Metadata = metadata;
            _txDeliver[deliver++] = buffer;
        }
        if (anyBadGrant && ++_consecutiveBadGrants >= MaxConsecutiveBadGrants)
        {
            Fail($"tx: {MaxConsecutiveBadGrants} batches in a row with packets whose grant copy failed");
            return true;
        }

        if (deliver > 0) _vif.DeliverFrames(_txDeliver.AsSpan(0, deliver));

        for (var i = 0; i < count; i++)
        {
            ref var packet = ref _txPackets[i];
            for (var r = packet.ResponseStart; r < packet.ResponseStart + packet.ResponseCount; r++)
            {
                var response = new NetifTxResponse { Id = _txResponseIds[r], Status = _txResponseNull[r] ? NetifStatus.Null : packet.Status };
                _tx.TryWriteResponse(response);
            }
        }
        if (_tx.PushResponses()) _txEvent.Notify();
        return true;
    }

    /// <summary>The size field of the next request, for the credit check (Linux peeks the same way); 0 if none.</summary>
    private unsafe int PeekFirstSize()
    {
        if (Credit.Limit is null) return 0;
        // Read-only peek at the slot the next TryConsumeRequest will copy; the copy is what we trust.
        var slot = (byte*)_txMap.Address + SharedRingHeader.EntriesOffset + (nint)(_tx.RequestConsumer & (uint)(_tx.Size - 1)) * sizeof(NetifTxRequest);
        return Unsafe.ReadUnaligned<ushort>(slot + 10);
    }

    /// <summary>
    /// Consumes one packet: first slot, extras, data slots; validates them as Linux does and plans the
    /// grant copies. False when the frontend broke the protocol (the queue has failed).
    /// </summary>
    private bool TakePacket(ref TxPacket packet, ref int responses, ref int ops, ref int staged)
    {
        _tx.TryConsumeRequest(out var first);
        packet = default;
        packet.ResponseStart = responses;
        packet.Status = NetifStatus.Okay;
        packet.Flags = first.Flags;
        AddResponse(first.Id, isNull: false, ref responses);

        var mcastAdd = default(NetifExtraInfo);
        var mcastDel = default(NetifExtraInfo);
        if ((first.Flags & NetTxFlags.ExtraInfo) != 0)
        {
            var extras = 0;
            NetifExtraInfo extra;
            do
            {
                if (++extras > MaxExtras)
                {
                    Fail($"tx: more than {MaxExtras} extra info segments");
                    return false;
                }
                if (!_tx.TryConsumeRequest(out var raw))
                {
                    Fail(_tx.IsBroken ? $"tx ring: {_tx.Error}" : "tx: missing extra info");
                    return false;
                }
                extra = Unsafe.As<NetifTxRequest, NetifExtraInfo>(ref raw);
                AddResponse(0, isNull: true, ref responses);
                switch (extra.Type)
                {
                    case NetifExtraType.Gso:
                        if (extra.GsoSize == 0)
                        {
                            Fail("tx: GSO size must not be zero");
                            return false;
                        }
                        if (extra.GsoType is not (NetifGsoType.TcpV4 or NetifGsoType.TcpV6))
                        {
                            Fail($"tx: bad GSO type {(byte)extra.GsoType}");
                            return false;
                        }
                        packet.HasGso = true;
                        packet.Gso = extra;
                        break;
                    case NetifExtraType.McastAdd:
                        mcastAdd = extra;
                        break;
                    case NetifExtraType.McastDel:
                        mcastDel = extra;
                        break;
                    case NetifExtraType.Hash:
                        break; // a hint we do not use
                    default:
                        Fail($"tx: invalid extra type {(byte)extra.Type}");
                        return false;
                }
            }
            while ((extra.Flags & NetifExtraFlags.More) != 0);
        }

        // Data slots: the first, then one per more_data.
        var slots = 1;
        _txSlots[0] = first;
        var last = first;
        while ((last.Flags & NetTxFlags.MoreData) != 0)
        {
            if (slots >= FatalSlots)
            {
                Fail($"tx: a packet of more than {FatalSlots} slots");
                return false;
            }
            if (!_tx.TryConsumeRequest(out last))
            {
                Fail(_tx.IsBroken ? $"tx ring: {_tx.Error}" : $"tx: a packet asks for more slots than were published");
                return false;
            }
            _txSlots[slots++] = last;
            AddResponse(last.Id, isNull: false, ref responses);
        }
        packet.ResponseCount = responses - packet.ResponseStart;

        if (mcastAdd.Type != NetifExtraType.None || mcastDel.Type != NetifExtraType.None)
        {
            // A multicast control packet is answered, not forwarded (Linux's xenvif_tx_build_gops).
            var ok = true;
            if (mcastAdd.Type != NetifExtraType.None) ok &= _vif.Filter.AddMulticast(MacOf(mcastAdd));
            if (mcastDel.Type != NetifExtraType.None) ok &= _vif.Filter.RemoveMulticast(MacOf(mcastDel));
            packet.Status = ok ? NetifStatus.Okay : NetifStatus.Error;
            return true;
        }

        // Sizes: the first slot's size is the whole packet; the others are taken out of it.
        int firstSize = first.Size;
        if (firstSize < EtherTypes.EthernetHeaderLength)
        {
            Drop(ref packet, ref _vif.Stats.TxMalformed);
            return CheckPageBounds(slots);
        }
        var remaining = firstSize;
        for (var s = 1; s < slots; s++)
        {
            if (_txSlots[s].Size > remaining)
            {
                Drop(ref packet, ref _vif.Stats.TxMalformed);
                return CheckPageBounds(slots);
            }
            remaining -= _txSlots[s].Size;
        }
        _txSlots[0].Size = (ushort)remaining;
        if (!CheckPageBounds(slots)) return false;
        if (slots > MaxSlots)
        {
            Drop(ref packet, ref _vif.Stats.TxTooManySlots);
            return true;
        }

        packet.Forward = true;
        packet.FrameOffset = staged;
        packet.Length = firstSize;
        packet.OpStart = ops;
        var local = (uint)staged;
        for (var s = 0; s < slots; s++)
        {
            var slot = _txSlots[s];
            // Zero-length fragments are answered with the packet and never copied (XSA-448).
            if (slot.Size == 0) continue;
            _txOps[ops++] = GrantCopyOp.FromGrant(_domid, slot.Gref, slot.Offset, local, slot.Size);
            local += slot.Size;
        }
        packet.OpCount = ops - packet.OpStart;
        // Keep PacketBuffer.Headroom free before the next frame for an 802.1Q push.
        staged = (int)((local + 63) & ~63u) + PacketBuffer.Headroom;
        return true;
    }

    /// <summary>Linux: a slot crossing its page is fatal ("Cross page boundary"), whatever else is wrong.</summary>
    private bool CheckPageBounds(int slots)
    {
        for (var s = 0; s < slots; s++)
        {
            if (_txSlots[s].Offset + _txSlots[s].Size > RingGeometry.PageSize)
            {
                Fail($"tx: slot offset {_txSlots[s].Offset} + size {_txSlots[s].Size} crosses its page");
                return false;
            }
        }
        return true;
    }

    private void Drop(ref TxPacket packet, ref long counter)
    {
        packet.Status = NetifStatus.Error;
        packet.Forward = false;
        Interlocked.Increment(ref counter);
        _vif.Counters.CountDrop(DropReason.Malformed);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void AddResponse(ushort id, bool isNull, ref int responses)
    {
        _txResponseIds[responses] = id;
        _txResponseNull[responses] = isNull;
        responses++;
    }

    private static ulong MacOf(NetifExtraInfo extra)
    {
        ReadOnlySpan<byte> mac = extra.McastAddr;
        return (ulong)BinaryPrimitives.ReadUInt32BigEndian(mac) << 16 | BinaryPrimitives.ReadUInt16BigEndian(mac[4..]);
    }
}
