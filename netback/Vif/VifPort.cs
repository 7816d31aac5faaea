using System.Buffers.Binary;
using XenIo.Hypervisor.Grants;
using XenIo.Hypervisor.Hypercalls;
using XenIo.Net.Frames;
using XenIo.VSwitch.Core;

namespace XenIo.Netback.Vif;

/// <summary>
/// One vif backend's data path as a switch port (kind <c>vif</c>): frames the guest sends come off its
/// TX rings and are delivered to the bridge; frames the bridge transmits go into its RX rings. The port
/// lives as long as the backend device, so its counters survive frontend reconnects; between
/// connections it is link-down. <see cref="Failed"/> is raised (once per connection, on a queue
/// thread) when the frontend breaks the protocol; the xenbus layer then disconnects the vif.
/// </summary>
public sealed class VifPort : SwitchPort
{
    private readonly Lock _gate = new();
    private VifQueue[] _queues = [];
    private ForeignDomain? _foreign;
    private VifFrontendFeatures _features = new() { CsumOffload = false };
    private VifRateLimit? _rate;
    private int _failedThisConnection;
    private string? _lastFailure;

    public VifPort(string name, ushort domid, int devid) : base(name)
    {
        Domid = domid;
        Devid = devid;
    }

    public override string Kind => "vif";
    public ushort Domid { get; }
    public int Devid { get; }
    public VifStats Stats { get; } = new();
    public VifFilter Filter { get; } = new();

    public bool IsConnected => Volatile.Read(ref _queues).Length > 0;
    public int QueueCount => Volatile.Read(ref _queues).Length;
    public VifFrontendFeatures Features => Volatile.Read(ref _features);
    public VifRateLimit? Rate => Volatile.Read(ref _rate);
    public string? LastFailure => Volatile.Read(ref _lastFailure);

    public override bool AcceptsGso
    {
        get
        {
            var f = Features;
            return f.Sg && f.GsoTcpV4 && f.GsoTcpV6;
        }
    }

    public override bool AcceptsPartialChecksum => Features.CsumOffload;

    /// <summary>Raised on a queue thread when the frontend broke the protocol; the argument is the one log line.</summary>
    public event Action<VifPort, string>? Failed;

    /// <summary>Frames queued for the guest because it had not posted buffers.</summary>
    public int RxPending => Volatile.Read(ref _queues).Sum(q => q.RxPendingCount);

    /// <summary>The <c>rate</c> credit limit; applies at once to every queue, connected or not.</summary>
    public void SetRate(VifRateLimit? rate)
    {
        lock (_gate)
        {
            // Only a real change resets the credit: re-reading the same key must not refill it.
            if (Equals(_rate, rate)) return;
            Volatile.Write(ref _rate, rate);
            foreach (var q in _queues) q.Credit.SetLimit(rate);
        }
    }

    /// <summary>
    /// Maps the guest's memory, each queue's rings and binds its event channels, then starts serving.
    /// Any failure undoes everything and returns false with the reason; nothing throws.
    /// </summary>
    public bool TryConnect(HypercallClient hypercalls, VifConnectSetup setup, out string error)
    {
        ArgumentNullException.ThrowIfNull(hypercalls);
        ArgumentNullException.ThrowIfNull(setup);
        Disconnect();
        ForeignDomain foreign;
        try
        {
            foreign = hypercalls.MapForeign(Domid);
        }
        catch (Exception e) when (e is HypercallException or IOException or InvalidDataException)
        {
            error = $"mapping domain {Domid}: {e.Message}";
            return false;
        }
        var queues = new List<VifQueue>(setup.Queues.Count);
        foreach (var rings in setup.Queues)
        {
            var q = VifQueue.TryConnect(this, foreign, hypercalls, setup.Features, rings, out error);
            if (q is null)
            {
                foreach (var done in queues) done.Stop();
                foreign.Dispose();
                return false;
            }
            queues.Add(q);
        }
        lock (_gate)
        {
            _foreign = foreign;
            Volatile.Write(ref _features, setup.Features);
            Filter.MulticastControl = setup.Features.MulticastControl;
            foreach (var q in queues) q.Credit.SetLimit(_rate);
            Interlocked.Exchange(ref _failedThisConnection, 0);
            Volatile.Write(ref _queues, queues.ToArray());
        }
        foreach (var q in queues) q.Start();
        Interlocked.Increment(ref Stats.Connects);
        error = "";
        return true;
    }

    /// <summary>Stops serving and releases the rings, ports and the guest's memory. Idempotent (XSA-350).</summary>
    public void Disconnect()
    {
        VifQueue[] queues;
        ForeignDomain? foreign;
        lock (_gate)
        {
            queues = _queues;
            foreign = _foreign;
            if (queues.Length == 0 && foreign is null) return;
            Volatile.Write(ref _queues, []);
            _foreign = null;
        }
        // The bridge transmits under its lock: once we have held it, no transmit uses the old queues.
        Bridge?.WithLock(static _ => 0);
        foreach (var q in queues) q.Stop();
        foreign?.Dispose();
        Filter.ClearMulticast();
        Volatile.Write(ref _features, new VifFrontendFeatures { CsumOffload = false });
        Interlocked.Increment(ref Stats.Disconnects);
    }

    internal void OnQueueFailed(VifQueue queue, string reason)
    {
        if (Interlocked.Exchange(ref _failedThisConnection, 1) != 0) return;
        Interlocked.Increment(ref Stats.Failures);
        var line = $"queue {queue.Index}: {reason}";
        Volatile.Write(ref _lastFailure, line);
        try
        {
            Failed?.Invoke(this, line);
        }
        catch (Exception)
        {
            // A handler's failure must not take the queue thread down with it.
        }
    }

    internal void DeliverFrames(ReadOnlySpan<PacketBuffer> batch) => Deliver(batch);

    protected override DropReason Transmit(ReadOnlySpan<byte> frame, in FrameMetadata metadata)
    {
        var queues = Volatile.Read(ref _queues);
        if (queues.Length == 0) return DropReason.LinkDown;
        if (!Filter.AllowsRx(frame))
        {
            Interlocked.Increment(ref Stats.RxMulticastFiltered);
            return DropReason.UnknownPeer;
        }
        var queue = queues.Length == 1 ? queues[0] : queues[(int)(FlowHash(frame) % (uint)queues.Length)];
        return queue.Transmit(frame, metadata);
    }

    /// <summary>Keeps a flow on one queue: addresses and ports of IPv4/IPv6, else the MACs.</summary>
    private static uint FlowHash(ReadOnlySpan<byte> frame)
    {
        uint h;
        var type = frame.Length >= 14 ? BinaryPrimitives.ReadUInt16BigEndian(frame[12..]) : 0;
        if (type == EtherTypes.IPv4 && frame.Length >= 38)
            h = BinaryPrimitives.ReadUInt32LittleEndian(frame[26..]) ^ BinaryPrimitives.ReadUInt32LittleEndian(frame[30..]) ^ BinaryPrimitives.ReadUInt32LittleEndian(frame[34..]);
        else if (type == EtherTypes.IPv6 && frame.Length >= 58)
            h = BinaryPrimitives.ReadUInt32LittleEndian(frame[34..]) ^ BinaryPrimitives.ReadUInt32LittleEndian(frame[50..]) ^ BinaryPrimitives.ReadUInt32LittleEndian(frame[54..]);
        else
            h = frame.Length >= 12 ? BinaryPrimitives.ReadUInt32LittleEndian(frame) ^ BinaryPrimitives.ReadUInt32LittleEndian(frame[6..]) : 0;
        h ^= h >> 16;
        h *= 0x45d9f3b;
        return h ^ (h >> 16);
    }

    public override void Dispose()
    {
        Disconnect();
        base.Dispose();
    }
}
