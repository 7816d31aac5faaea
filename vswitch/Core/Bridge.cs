using System.Buffers.Binary;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using XenIo.Net.Frames;
using XenIo.Net.Offload;

namespace XenIo.VSwitch.Core;

/// <summary>Which way a frame crosses a port, seen from the switch.</summary>
public enum CaptureDirection : byte
{
    /// <summary>From the port's peer into the switch.</summary>
    Ingress = 1,
    /// <summary>From the switch out to the port's peer.</summary>
    Egress = 2,
}

/// <summary>
/// Sees every frame as it crosses a port of a bridge (mirrors implement it), as it is on that port's
/// wire. Called under the bridge's lock on the forwarding path: it must neither block nor throw.
/// </summary>
public interface IFrameObserver
{
    void Observe(SwitchPort port, CaptureDirection direction, int vlan, ReadOnlySpan<byte> frame, in FrameMetadata metadata);
}

/// <summary>
/// A learning Ethernet switch: VLAN classification and 802.1Q pop/push, MAC learning, flooding with
/// split horizon, per-port MTU, admin state, rate limits and counters, and mirrors. <see cref="Receive"/>
/// decides the whole destination set before any frame byte moves, then hands the one frame to each
/// destination port (untagged destinations first, then the tag is pushed in place for tagged ones), so a
/// frame is copied once, by the destination port. Ports that cannot take offloaded frames get software
/// checksum completion and TCP segmentation into a bridge-owned scratch buffer. One lock serialises
/// forwarding: ports call in from their own I/O threads, and the tables are not shared otherwise.
/// Frames come from guests and peers: nothing here throws on a bad frame; it is dropped and counted.
/// </summary>
public sealed class Bridge
{
    private const int MaxPorts = 4096;
    private const int VlanIds = 4096;
    private readonly Lock _gate = new();
    private readonly TimeProvider _time;
    private readonly SwitchPort?[] _slots = new SwitchPort?[MaxPorts];
    private SwitchPort[] _active = [];
    private IFrameObserver[] _observers = [];
    private readonly int[] _destinations = new int[MaxPorts];
    private readonly VlanEgress[] _egress = new VlanEgress[MaxPorts];
    // Per-slot VLAN decisions precomputed from each port's PortVlan (refreshed under the lock when the
    // port joins or changes VLANs), so the per-frame path is one array load instead of a mode switch and
    // a bitmap probe for every ingress classification and every egress candidate.
    private readonly VlanEgress[]?[] _egressByVlan = new VlanEgress[]?[MaxPorts];
    private readonly int[] _untaggedVlan = new int[MaxPorts];
    private readonly PlainEgress[] _plainEgress = new PlainEgress[MaxPorts];

    /// <summary>
    /// Per slot, what the batch path needs to hand a plain frame (untagged, no offload to undo) straight
    /// to the port without asking it: the port when it is up, has no egress limit and sends one VLAN
    /// untagged, that VLAN, and the longest frame its MTU lets through. Refreshed under the lock whenever
    /// one of those changes (<see cref="OnPortStateChanged"/>), so a frame that matches it passes every
    /// check the general path makes; anything else takes the general path.
    /// </summary>
    private struct PlainEgress
    {
        public SwitchPort? Port;
        public int Vlan;
        public int MaxLength;
    }
    private readonly byte[] _scratch = new byte[EtherTypes.MaxFrameLength + 64];
    private readonly SegmentSink _segmentSink;

    public Bridge(string name, int fdbLimit = 8192, TimeSpan? aging = null, TimeProvider? time = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        Name = name;
        _time = time ?? TimeProvider.System;
        _coarseClock = ReferenceEquals(_time, TimeProvider.System) && CoarseClockAgrees();
        Fdb = new ForwardingDatabase(fdbLimit, aging, time: _time);
        Array.Fill(_plainEgress, new PlainEgress { Vlan = -1 });
        _segmentSink = new SegmentSink(this);
    }

    public string Name { get; }
    public ForwardingDatabase Fdb { get; }

    // The forwarding path needs time only for learning and aging (seconds), so on the system clock it
    // reads the kernel's coarse monotonic clock (Environment.TickCount64, CLOCK_MONOTONIC_COARSE: no
    // TSC read, a few ns even in a VM) instead of the precise one (tens of ns in a VM, once per batch).
    // Both count from boot, so the coarse one is the precise one rounded down by at most a tick.
    private readonly bool _coarseClock;
    private static readonly long TicksPerMillisecond = Stopwatch.Frequency / 1000;

    private static bool CoarseClockAgrees()
    {
        if (Stopwatch.Frequency % 1000 != 0) return false;
        var precise = Stopwatch.GetTimestamp();
        var coarse = Environment.TickCount64 * TicksPerMillisecond;
        return Math.Abs(precise - coarse) < Stopwatch.Frequency / 10;
    }

    private long Now() => _coarseClock ? Environment.TickCount64 * TicksPerMillisecond : _time.GetTimestamp();

    /// <summary>Unicast frames whose destination sits on the port they came in on, or on another split-horizon port when they came in on one (not forwarded, not an error).</summary>
    public long Filtered { get; private set; }
    public long Flooded { get; private set; }

    public IReadOnlyList<SwitchPort> Ports => Volatile.Read(ref _active);

    /// <summary>Runs <paramref name="action"/> under the forwarding lock (management reads of the FDB).</summary>
    public T WithLock<T>(Func<Bridge, T> action)
    {
        lock (_gate) return action(this);
    }

    public SwitchPort? FindPort(string name)
    {
        foreach (var p in Ports)
            if (p.Name == name) return p;
        return null;
    }

    public void AddPort(SwitchPort port)
    {
        ArgumentNullException.ThrowIfNull(port);
        lock (_gate)
        {
            if (port.Bridge is not null) throw new InvalidOperationException($"port {port.Name} already belongs to bridge {port.Bridge.Name}");
            if (FindPort(port.Name) is not null) throw new InvalidOperationException($"bridge {Name} already has a port {port.Name}");
            var index = Array.IndexOf(_slots, null);
            if (index < 0) throw new InvalidOperationException($"bridge {Name} has {MaxPorts} ports already");
            _slots[index] = port;
            port.Index = index;
            port.Bridge = this;
            RefreshVlanCache(port);
            Volatile.Write(ref _active, [.. _active, port]);
        }
        port.OnAttached();
    }

    public bool RemovePort(SwitchPort port)
    {
        lock (_gate)
        {
            if (port.Bridge != this) return false;
            _slots[port.Index] = null;
            _plainEgress[port.Index] = new PlainEgress { Vlan = -1 };
            Fdb.Flush(port.Index, includeStatic: true);
            Volatile.Write(ref _active, _active.Where(p => p != port).ToArray());
            port.Bridge = null;
            port.Index = -1;
        }
        port.OnDetached();
        return true;
    }

    public void AddObserver(IFrameObserver observer)
    {
        lock (_gate) _observers = [.. _observers, observer];
    }

    public void RemoveObserver(IFrameObserver observer)
    {
        lock (_gate) _observers = _observers.Where(o => o != observer).ToArray();
    }

    internal void OnPortChanged(SwitchPort port)
    {
        // A port that changes VLANs must not keep attracting frames for VLANs it left.
        lock (_gate)
        {
            if (port.Bridge != this) return;
            RefreshVlanCache(port);
            Fdb.Flush(port.Index);
        }
    }

    private void RefreshVlanCache(SwitchPort port)
    {
        var config = port.Vlan;
        var table = _egressByVlan[port.Index] ??= new VlanEgress[VlanIds];
        for (var vid = 0; vid < VlanIds; vid++) table[vid] = config.Egress(vid);
        _untaggedVlan[port.Index] = config.ClassifyIngress(false, 0);
        RefreshPlainEgress(port);
    }

    /// <summary>Called by a port whose admin state, MTU or egress limit changed.</summary>
    internal void OnPortStateChanged(SwitchPort port)
    {
        lock (_gate)
        {
            if (port.Bridge == this) RefreshPlainEgress(port);
        }
    }

    private void RefreshPlainEgress(SwitchPort port)
    {
        var untagged = port.Vlan.UntaggedEgressVlan;
        var plain = port.AdminUp && port.EgressLimit is null && untagged >= 0;
        _plainEgress[port.Index] = plain
            ? new PlainEgress { Port = port, Vlan = untagged, MaxLength = port.Mtu + EtherTypes.EthernetHeaderLength }
            : new PlainEgress { Vlan = -1 };
    }

    /// <summary>Ages out the forwarding database; called periodically by the owner.</summary>
    public int Housekeeping()
    {
        lock (_gate) return Fdb.Sweep();
    }

    /// <summary>
    /// Forwards one frame that arrived on <paramref name="ingress"/>: <c>buffer[offset .. offset + metadata.Length]</c>
    /// with at least 4 free bytes before it. The buffer may be rewritten.
    /// </summary>
    public void Receive(SwitchPort ingress, Span<byte> buffer, int offset, ref FrameMetadata metadata)
    {
        lock (_gate) ReceiveLocked(ingress, buffer, offset, ref metadata, Now());
    }

    /// <summary>
    /// Forwards a batch of frames that arrived on <paramref name="ingress"/> (each <see cref="PacketBuffer"/>
    /// with its frame set by <see cref="PacketBuffer.SetFrame"/> and its offload state in its metadata): one lock and one clock read
    /// for the whole batch, which is what ports that drain their peer in bursts should call.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public void Receive(SwitchPort ingress, ReadOnlySpan<PacketBuffer> batch)
    {
        lock (_gate)
        {
            var now = Now();
            if (ingress.Bridge != this) return;
            // What makes a batch plain is decided once for all its frames: an ingress port that is up,
            // unlimited, untagged-capable and not observed by any mirror.
            // A split-horizon port (a tunnel) is not plain either: its known unicast must not go out another tunnel.
            if (ingress.AdminUp && ingress.IngressLimit is null && !ingress.SplitHorizon && _observers.Length == 0 && _untaggedVlan[ingress.Index] >= 0)
            {
                ReceivePlain(ingress, batch, now);
                return;
            }
            foreach (var packet in batch) ReceiveOne(ingress, packet, now);
        }
    }

    /// <summary>One frame of a batch through the general path (every check, every counter, observers).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ReceiveOne(SwitchPort ingress, PacketBuffer packet, long now)
    {
        packet.Metadata.Length = packet.Length;
        packet.Metadata.IngressPort = ingress.Index;
        ReceiveLocked(ingress, packet.Data, packet.Offset, ref packet.Metadata, now);
    }

    /// <summary>
    /// The batch path for a plain ingress port, over up to <see cref="ChunkFrames"/> frames at a time in
    /// two short passes, each with its few invariants in registers: <see cref="Classify"/> checks the
    /// frames, learns each source and looks up each destination in arrival order (exactly what
    /// frame-by-frame forwarding does to the table); <see cref="DeliverClassified"/> hands the frames to
    /// their destinations in the same order. A frame the first pass cannot take (short, oversized,
    /// tagged, bad source; a new or moved source, an unknown or aged-out destination) ends the chunk
    /// there: the frames before it are forwarded, then it goes through <see cref="ReceiveOne"/>, which
    /// checks, learns, counts and floods it as a frame arriving alone.
    /// </summary>
    private void ReceivePlain(SwitchPort ingress, ReadOnlySpan<PacketBuffer> batch, long now)
    {
        var start = 0;
        while (start < batch.Length)
        {
            var chunk = batch.Slice(start, Math.Min(ChunkFrames, batch.Length - start));
            var taken = Classify(ingress, chunk, now);
            if (taken != 0) DeliverClassified(ingress, chunk[..taken]);
            if (taken < chunk.Length) ReceiveOne(ingress, chunk[taken++], now);
            start += taken;
        }
    }

    private const int ChunkFrames = 64;
    /// <summary>Per frame of the chunk in hand: its destination's slot, or -1 to flood.</summary>
    private readonly int[] _targets = new int[ChunkFrames];

    /// <summary>
    /// The first pass of <see cref="ReceivePlain"/>: checks each frame as the general path would, learns
    /// its source and looks up its destination (<see cref="ForwardingDatabase.BatchView.TryLearnAndLookup"/>), and
    /// stops at the first one it cannot take; counts what it took on the ingress port (once per chunk).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)] // once per chunk: its loop gets the registers to itself
    private int Classify(SwitchPort ingress, ReadOnlySpan<PacketBuffer> chunk, long now)
    {
        var index = ingress.Index;
        var vlan = _untaggedVlan[index];
        var vlanKey = ForwardingDatabase.Key(0, vlan);
        // The longest payload (frame minus Ethernet header) the ingress MTU admits without GSO.
        var maxPlainPayload = (uint)ingress.Mtu;
        // The caller hands at most ChunkFrames frames, the length of the target array.
        Debug.Assert(chunk.Length <= ChunkFrames);
        ref var targets = ref MemoryMarshal.GetArrayDataReference(_targets);
        var fdb = Fdb.ForBatch(now);
        // At most ChunkFrames frames of at most MaxFrameLength bytes each: the sum fits an int.
        var rxBytes = 0;
        var i = 0;
        for (; i < chunk.Length; i++)
        {
            var packet = chunk[i];
            var length = packet.Length;
            // PacketBuffer.SetFrame keeps the frame inside its array with headroom for a tag: only
            // what the switch itself requires of a frame is checked here. One compare passes every
            // frame the ingress MTU admits; a longer one must be a GSO frame within the switch's limit.
            if ((uint)(length - EtherTypes.EthernetHeaderLength) > maxPlainPayload
                && (length < EtherTypes.EthernetHeaderLength || length > EtherTypes.MaxFrameLength || !packet.Metadata.IsGso))
                break;
            if (packet.Metadata.HasVlan) break;
            // Offset is never negative (SetFrame): read unsigned, it needs no sign extension.
            ref var frame = ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(packet.Data), (nuint)(uint)packet.Offset);
            // The frame's first 14 bytes as two 8-byte loads: bytes 0-7 hold the destination MAC,
            // bytes 6-13 the source MAC and the EtherType. A MAC's group (multicast) bit is bit 0 of its
            // first byte, the lowest byte of a little-endian load; each MAC is the top 48 bits of the
            // load read big-endian.
            var head = Unsafe.ReadUnaligned<ulong>(ref frame);
            var tail = Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref frame, EtherTypes.MacLength));
            if ((tail & 1) != 0 || tail >> 48 == VlanEtherTypeInMemory)
                break;
            var source = BinaryPrimitives.ReverseEndianness(tail) >> 16;
            var destination = (head & 1) == 0 ? vlanKey | BinaryPrimitives.ReverseEndianness(head) >> 16 : 0;
            if (!fdb.TryLearnAndLookup(vlanKey | source, destination, index, out var target))
                break;
            Unsafe.Add(ref targets, i) = target;
            rxBytes += length;
            packet.Metadata.Length = length;
            packet.Metadata.IngressPort = index;
            packet.Metadata.VlanTci = (ushort)vlan;
        }
        var counters = ingress.Counters;
        counters.RxPacketsField += i;
        counters.RxBytesField += rxBytes;
        return i;
    }

    /// <summary>
    /// The last pass of <see cref="ReceivePlain"/>: each frame to its known destination or flooded. A
    /// port that throws has that frame counted as a transmit error and delivery goes on with the next
    /// frame, as <see cref="Send"/> does for one frame. The guard sits around <see cref="DeliverFrom"/>
    /// rather than inside its loop: a loop inside a try keeps its locals in memory, not in registers.
    /// </summary>
    private void DeliverClassified(SwitchPort ingress, ReadOnlySpan<PacketBuffer> chunk)
    {
        var i = 0;
        while (i < chunk.Length)
        {
            try
            {
                i = DeliverFrom(ingress, chunk, i);
            }
            catch (Exception)
            {
                // Only port.Transmit in DeliverFrom can throw (everything else called there guards itself).
                _slots[_targets[_delivering]]?.Counters.CountDrop(DropReason.TxError);
                i = _delivering + 1;
            }
        }
    }

    /// <summary>The frame of the chunk <see cref="DeliverFrom"/> is handing to a port, for the guard in <see cref="DeliverClassified"/>.</summary>
    private int _delivering;

    /// <summary>
    /// Delivers <paramref name="chunk"/> from frame <paramref name="start"/> on and returns its length. A
    /// frame whose destination's <see cref="PlainEgress"/> matches goes straight to the port's transmit
    /// here; anything else (flood, tagged egress, offload to undo, a limited or down port) takes the
    /// general path.
    /// </summary>
    private int DeliverFrom(SwitchPort ingress, ReadOnlySpan<PacketBuffer> chunk, int start)
    {
        var index = ingress.Index;
        // Classify gave every frame of the chunk the ingress port's untagged VLAN.
        var vlan = _untaggedVlan[index];
        // Classify filled the first chunk.Length targets (at most ChunkFrames).
        ref var targets = ref MemoryMarshal.GetArrayDataReference(_targets);
        ref var plainEgress = ref MemoryMarshal.GetArrayDataReference(_plainEgress);
        ref var packets = ref MemoryMarshal.GetReference(chunk);
        var count = Math.Min(chunk.Length, ChunkFrames);
        for (var i = start; i < count; i++)
        {
            var packet = Unsafe.Add(ref packets, i);
            var known = Unsafe.Add(ref targets, i);
            // The table holds slots of this bridge: 0..MaxPorts-1, or -1 for unknown.
            if ((uint)known < MaxPorts)
            {
                ref var egress = ref Unsafe.Add(ref plainEgress, known);
                var length = packet.Length;
                if (egress.Vlan == vlan && known != index && length <= egress.MaxLength && !packet.Metadata.HasOffload)
                {
                    var port = egress.Port!;
                    // PacketBuffer keeps Offset and Length inside its array.
                    var frame = MemoryMarshal.CreateReadOnlySpan(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(packet.Data), packet.Offset), length);
                    _delivering = i;
                    var result = port.Transmit(frame, packet.Metadata);
                    var counters = port.Counters;
                    if (result != DropReason.None)
                    {
                        counters.CountDrop(result);
                        continue;
                    }
                    counters.TxPacketsField++;
                    counters.TxBytesField += length;
                    continue;
                }
            }
            DeliverGeneral(ingress, packet, known);
        }
        return chunk.Length;
    }

    /// <summary>One frame of a plain chunk that <see cref="DeliverFrom"/> cannot hand over directly.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void DeliverGeneral(SwitchPort ingress, PacketBuffer packet, int known)
    {
        var vlan = packet.Metadata.VlanTci;
        if (known < 0) Flood(ingress, vlan, packet.Data, packet.Offset, packet.Length, packet.Metadata);
        else ForwardKnown(ingress, known, vlan, packet.Data, packet.Offset, packet.Length, packet.Metadata);
    }

    /// <summary>
    /// A frame whose destination the table knows: filtered when that is the ingress port or when both are
    /// split-horizon ports (tunnel to tunnel, as in flooding), else sent there untagged or tagged.
    /// </summary>
    private void ForwardKnown(SwitchPort ingress, int known, int vlan, Span<byte> buffer, int offset, int length, in FrameMetadata metadata)
    {
        var port = _slots[known];
        if (known == ingress.Index || (ingress.SplitHorizon && port is { SplitHorizon: true }))
        {
            Filtered++;
            return;
        }
        if (port is null || !port.AdminUp) return;
        var egress = _egressByVlan[known]![vlan];
        // The common case: no tag to push.
        if (egress == VlanEgress.Untagged) Transmit(port, vlan, buffer.Slice(offset, length), metadata, 0);
        else if (egress == VlanEgress.Tagged) ForwardTagged(known, vlan, buffer, offset, length, metadata);
    }

    private static readonly ushort VlanEtherTypeInMemory = BitConverter.IsLittleEndian ? BinaryPrimitives.ReverseEndianness(EtherTypes.Vlan) : EtherTypes.Vlan;

    // The per-frame path is split: this method carries only what an untagged frame to one known,
    // untagged destination needs, so the JIT keeps its state in registers; 802.1Q ingress, observers,
    // flooding and tagged egress live in their own methods. The checks, their order and the counters are
    // the same on every path. It is inlined into the batch loop, and that loop is never inlined into a
    // port's own code: inlined there it exhausts the JIT's inlining budget, and the span and byte-order
    // helpers used here become real calls per frame.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void ReceiveLocked(SwitchPort ingress, Span<byte> buffer, int offset, ref FrameMetadata metadata, long now)
    {
        if (ingress.Bridge != this) return;
        var counters = ingress.Counters;
        var length = metadata.Length;
        if (!ingress.AdminUp)
        {
            counters.CountDrop(DropReason.AdminDown);
            return;
        }
        if (length < EtherTypes.MinFrameLength || offset < EtherTypes.VlanTagLength || (uint)(offset + length) > (uint)buffer.Length || length < 0)
        {
            counters.CountDrop(DropReason.Runt);
            return;
        }
        if (length > EtherTypes.MaxFrameLength)
        {
            counters.CountDrop(DropReason.TooBig);
            return;
        }

        int vlan;
        if (metadata.HasVlan || BinaryPrimitives.ReadUInt16BigEndian(buffer[(offset + 12)..]) == EtherTypes.Vlan)
        {
            vlan = ReceiveTagged(ingress, buffer, ref offset, ref metadata);
            if (vlan < 0) return;
            length = metadata.Length;
        }
        else
        {
            if (!metadata.IsGso && length - EtherTypes.EthernetHeaderLength > ingress.Mtu)
            {
                counters.CountDrop(DropReason.TooBig);
                return;
            }
            if (ingress.IngressLimit is { } limit && !limit.TryAdmit(length))
            {
                counters.CountDrop(DropReason.RateLimit);
                return;
            }
            counters.RxPacketsField++;
            counters.RxBytesField += length;
            vlan = _untaggedVlan[ingress.Index];
            if (_observers.Length != 0) ObserveIngress(ingress, vlan >= 0 ? vlan : metadata.VlanTci & 0x0FFF, buffer.Slice(offset, length), metadata);
            if (vlan < 0)
            {
                counters.CountDrop(DropReason.Vlan);
                return;
            }
            metadata.HasVlan = false;
            metadata.VlanTci = (ushort)vlan;
        }
        var frame = buffer.Slice(offset, length);

        // Both MACs with one 8-byte big-endian load each (the frame is at least 14 bytes).
        var source = BinaryPrimitives.ReadUInt64BigEndian(frame[(EtherTypes.MacLength - 2)..]) & 0xFFFF_FFFF_FFFF;
        if ((source & 0x0100_0000_0000) != 0)
        {
            counters.CountDrop(DropReason.BadSource);
            return;
        }
        Fdb.Learn(source, vlan, ingress.Index, now);

        var destination = BinaryPrimitives.ReadUInt64BigEndian(frame) >> 16;
        if ((destination & 0x0100_0000_0000) == 0)
        {
            var known = Fdb.Lookup(destination, vlan, now);
            if (known >= 0)
            {
                ForwardKnown(ingress, known, vlan, buffer, offset, length, metadata);
                return;
            }
        }
        Flood(ingress, vlan, buffer, offset, length, metadata);
    }

    /// <summary>
    /// Ingress of a frame tagged in its metadata or in its bytes: classification, checks, counters,
    /// observers, and the pop of an in-band tag. Returns the frame's VLAN, or -1 when it was dropped
    /// (counted here). On return <paramref name="offset"/> and <c>metadata.Length</c> describe the untagged frame.
    /// </summary>
    private int ReceiveTagged(SwitchPort ingress, Span<byte> buffer, ref int offset, ref FrameMetadata metadata)
    {
        var counters = ingress.Counters;
        var length = metadata.Length;
        var frame = buffer.Slice(offset, length);
        var tagged = metadata.HasVlan;
        var tci = metadata.VlanTci;
        var tagInBytes = false;
        if (!tagged)
        {
            if (length < EtherTypes.EthernetHeaderLength + EtherTypes.VlanTagLength)
            {
                counters.CountDrop(DropReason.Runt);
                return -1;
            }
            tci = BinaryPrimitives.ReadUInt16BigEndian(frame[14..]);
            tagged = true;
            tagInBytes = true;
        }
        var l3Length = length - EtherTypes.EthernetHeaderLength - (tagInBytes ? EtherTypes.VlanTagLength : 0);
        if (!metadata.IsGso && l3Length > ingress.Mtu)
        {
            counters.CountDrop(DropReason.TooBig);
            return -1;
        }
        if (ingress.IngressLimit is { } limit && !limit.TryAdmit(length))
        {
            counters.CountDrop(DropReason.RateLimit);
            return -1;
        }
        counters.RxPacketsField++;
        counters.RxBytesField += length;

        var vlan = ingress.Vlan.ClassifyIngress(tagged, tci & 0x0FFF);
        if (_observers.Length != 0) ObserveIngress(ingress, vlan >= 0 ? vlan : tci & 0x0FFF, tagInBytes ? frame : WithTag(frame, tci), metadata);
        if (vlan < 0)
        {
            counters.CountDrop(DropReason.Vlan);
            return -1;
        }

        if (tagInBytes)
        {
            if (metadata.Checksum == ChecksumState.Partial)
            {
                if (metadata.CsumStart < EtherTypes.EthernetHeaderLength + EtherTypes.VlanTagLength)
                {
                    counters.CountDrop(DropReason.Malformed);
                    return -1;
                }
                metadata.CsumStart -= EtherTypes.VlanTagLength;
            }
            if (metadata.HeaderLength >= EtherTypes.VlanTagLength) metadata.HeaderLength -= EtherTypes.VlanTagLength;
            // Pop: slide the two MACs over the tag rather than the payload over the gap.
            buffer.Slice(offset, 2 * EtherTypes.MacLength).CopyTo(buffer[(offset + EtherTypes.VlanTagLength)..]);
            offset += EtherTypes.VlanTagLength;
            length -= EtherTypes.VlanTagLength;
        }
        metadata.Length = length;
        metadata.HasVlan = false;
        // Keep the priority bits for a tagged egress; the VID is the classified VLAN.
        metadata.VlanTci = (ushort)((tci & 0xF000) | vlan);
        return vlan;
    }

    /// <summary>
    /// A frame whose port carried its tag out of band (in the metadata) as it was on that port's wire,
    /// the tag in front of the EtherType, in the scratch buffer: what a mirror filters and records.
    /// </summary>
    private ReadOnlySpan<byte> WithTag(ReadOnlySpan<byte> frame, ushort tci)
    {
        var tagged = _scratch.AsSpan(0, frame.Length + EtherTypes.VlanTagLength);
        frame[..(2 * EtherTypes.MacLength)].CopyTo(tagged);
        BinaryPrimitives.WriteUInt16BigEndian(tagged[12..], EtherTypes.Vlan);
        BinaryPrimitives.WriteUInt16BigEndian(tagged[14..], tci);
        frame[(2 * EtherTypes.MacLength)..].CopyTo(tagged[(2 * EtherTypes.MacLength + EtherTypes.VlanTagLength)..]);
        return tagged;
    }

    private void ObserveIngress(SwitchPort ingress, int vlan, ReadOnlySpan<byte> frame, in FrameMetadata metadata)
    {
        foreach (var o in _observers) o.Observe(ingress, CaptureDirection.Ingress, vlan, frame, metadata);
    }

    /// <summary>One known destination that takes the frame tagged.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ForwardTagged(int known, int vlan, Span<byte> buffer, int offset, int length, in FrameMetadata metadata)
    {
        _destinations[0] = known;
        _egress[0] = VlanEgress.Tagged;
        DeliverAll(1, anyTagged: true, vlan, buffer, offset, length, metadata);
    }

    /// <summary>Broadcast, multicast and unknown unicast: every other member port of the VLAN, split horizon kept.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void Flood(SwitchPort ingress, int vlan, Span<byte> buffer, int offset, int length, in FrameMetadata metadata)
    {
        Flooded++;
        var count = 0;
        var anyTagged = false;
        var ingressSplit = ingress.SplitHorizon;
        foreach (var port in _active)
        {
            if (port == ingress || !port.AdminUp) continue;
            if (ingressSplit && port.SplitHorizon) continue;
            var egress = _egressByVlan[port.Index]![vlan];
            if (egress == VlanEgress.NotMember) continue;
            _destinations[count] = port.Index;
            _egress[count] = egress;
            anyTagged |= egress == VlanEgress.Tagged;
            count++;
        }
        if (count != 0) DeliverAll(count, anyTagged, vlan, buffer, offset, length, metadata);
    }

    /// <summary>Hands the frame to the chosen destinations: untagged ones first, then the tag is pushed in place for the tagged ones.</summary>
    private void DeliverAll(int count, bool anyTagged, int vlan, Span<byte> buffer, int offset, int length, in FrameMetadata metadata)
    {
        var frame = buffer.Slice(offset, length);
        for (var i = 0; i < count; i++)
        {
            if (_egress[i] == VlanEgress.Untagged) Transmit(_slots[_destinations[i]]!, vlan, frame, metadata, 0);
        }
        if (!anyTagged) return;

        // Push: slide the MACs into the headroom and write the tag behind them.
        buffer.Slice(offset, 2 * EtherTypes.MacLength).CopyTo(buffer[(offset - EtherTypes.VlanTagLength)..]);
        offset -= EtherTypes.VlanTagLength;
        BinaryPrimitives.WriteUInt16BigEndian(buffer[(offset + 12)..], EtherTypes.Vlan);
        BinaryPrimitives.WriteUInt16BigEndian(buffer[(offset + 14)..], metadata.VlanTci);
        var taggedFrame = buffer.Slice(offset, length + EtherTypes.VlanTagLength);
        var taggedMetadata = metadata;
        taggedMetadata.Length = taggedFrame.Length;
        if (taggedMetadata.Checksum == ChecksumState.Partial) taggedMetadata.CsumStart += EtherTypes.VlanTagLength;
        if (taggedMetadata.IsGso) taggedMetadata.HeaderLength += EtherTypes.VlanTagLength;
        for (var i = 0; i < count; i++)
        {
            if (_egress[i] == VlanEgress.Tagged) Transmit(_slots[_destinations[i]]!, vlan, taggedFrame, taggedMetadata, EtherTypes.VlanTagLength);
        }
    }

    private void Transmit(SwitchPort port, int vlan, ReadOnlySpan<byte> frame, in FrameMetadata metadata, int tagLength)
    {
        // The common frame (no egress limit, no offload to undo) takes the short way; the checks below
        // are the same ones in the same order.
        if (port.EgressLimit is null && !metadata.HasOffload)
        {
            if (frame.Length - EtherTypes.EthernetHeaderLength - tagLength > port.Mtu)
            {
                port.Counters.CountDrop(DropReason.TooBig);
                return;
            }
            Send(port, vlan, frame, metadata);
            return;
        }
        TransmitChecked(port, vlan, frame, metadata, tagLength);
    }

    private void TransmitChecked(SwitchPort port, int vlan, ReadOnlySpan<byte> frame, in FrameMetadata metadata, int tagLength)
    {
        if (port.EgressLimit is { } limit && !limit.TryAdmit(frame.Length))
        {
            port.Counters.CountDrop(DropReason.RateLimit);
            return;
        }
        if (metadata.IsGso && !port.AcceptsGso)
        {
            _segmentSink.Port = port;
            _segmentSink.Vlan = vlan;
            _segmentSink.MaxLength = port.Mtu + EtherTypes.EthernetHeaderLength + tagLength;
            var result = TcpSegmenter.Segment(frame, metadata, _scratch, _segmentSink, out _);
            if (result != SegmentResult.Ok) port.Counters.CountDrop(DropReason.Malformed);
            return;
        }
        if (!metadata.IsGso && frame.Length - EtherTypes.EthernetHeaderLength - tagLength > port.Mtu)
        {
            port.Counters.CountDrop(DropReason.TooBig);
            return;
        }
        if (metadata.Checksum == ChecksumState.Partial && !port.AcceptsPartialChecksum)
        {
            var copy = _scratch.AsSpan(0, frame.Length);
            frame.CopyTo(copy);
            if (!TransportChecksum.CompletePartial(copy, metadata.CsumStart, metadata.CsumOffset))
            {
                port.Counters.CountDrop(DropReason.Malformed);
                return;
            }
            var completed = metadata;
            completed.Checksum = ChecksumState.None;
            Send(port, vlan, copy, completed);
            return;
        }
        Send(port, vlan, frame, metadata);
    }

    private void Send(SwitchPort port, int vlan, ReadOnlySpan<byte> frame, in FrameMetadata metadata)
    {
        DropReason result;
        try
        {
            result = port.Transmit(frame, metadata);
        }
        catch (Exception)
        {
            // A port's failure stays that port's: counted, never thrown into the sender's thread.
            result = DropReason.TxError;
        }
        if (result != DropReason.None)
        {
            port.Counters.CountDrop(result);
            return;
        }
        port.Counters.TxPacketsField++;
        port.Counters.TxBytesField += frame.Length;
        foreach (var o in _observers) o.Observe(port, CaptureDirection.Egress, vlan, frame, metadata);
    }

    private sealed class SegmentSink(Bridge bridge) : ISegmentSink
    {
        public SwitchPort? Port;
        public int Vlan;
        public int MaxLength;

        public void OnSegment(ReadOnlySpan<byte> segment)
        {
            if (segment.Length > MaxLength)
            {
                Port!.Counters.CountDrop(DropReason.TooBig);
                return;
            }
            var metadata = FrameMetadata.Plain(segment.Length);
            metadata.Checksum = ChecksumState.None;
            bridge.Send(Port!, Vlan, segment, metadata);
        }
    }
}
