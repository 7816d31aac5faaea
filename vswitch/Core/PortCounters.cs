namespace XenIo.VSwitch.Core;

/// <summary>Why a port dropped a frame (the reasons <c>xenio switch stats</c> lists).</summary>
public enum DropReason
{
    None = 0,
    /// <summary>The port is administratively down.</summary>
    AdminDown,
    /// <summary>Shorter than an Ethernet header.</summary>
    Runt,
    /// <summary>Larger than the port's MTU (or than any frame the switch carries).</summary>
    TooBig,
    /// <summary>Not allowed by the port's VLAN configuration.</summary>
    Vlan,
    /// <summary>A multicast or broadcast source MAC.</summary>
    BadSource,
    /// <summary>Held back by the port's token buckets.</summary>
    RateLimit,
    /// <summary>The port's transmit queue or the kernel's was full.</summary>
    QueueFull,
    /// <summary>The port's transmit failed (a socket or device error).</summary>
    TxError,
    /// <summary>Bad offload metadata, or a frame software offload could not segment or complete.</summary>
    Malformed,
    /// <summary>From a peer the port is not configured to accept (VXLAN remote, stream peer).</summary>
    UnknownPeer,
    /// <summary>No buffer was free to hold the frame.</summary>
    NoBuffer,
    /// <summary>The port has no peer right now (a stream port between connections).</summary>
    LinkDown,
}

/// <summary>
/// Per-port counters. The packet and byte counts are written by the bridge under its lock; drops can
/// come from a port's own I/O thread too, so they are added atomically. Readers may see a frame's
/// packet count before its byte count; nothing depends on the two agreeing.
/// </summary>
public sealed class PortCounters
{
    public static readonly int ReasonCount = Enum.GetValues<DropReason>().Length;
    private readonly long[] _drops = new long[ReasonCount];

    internal long RxPacketsField;
    internal long RxBytesField;
    internal long TxPacketsField;
    internal long TxBytesField;

    public long RxPackets => Volatile.Read(ref RxPacketsField);
    public long RxBytes => Volatile.Read(ref RxBytesField);
    public long TxPackets => Volatile.Read(ref TxPacketsField);
    public long TxBytes => Volatile.Read(ref TxBytesField);

    public long Drops(DropReason reason) => Volatile.Read(ref _drops[(int)reason]);

    public long TotalDrops
    {
        get
        {
            long total = 0;
            for (var i = 1; i < _drops.Length; i++) total += Volatile.Read(ref _drops[i]);
            return total;
        }
    }

    public void CountDrop(DropReason reason) => Interlocked.Increment(ref _drops[(int)reason]);

    public IEnumerable<KeyValuePair<DropReason, long>> DropsByReason()
    {
        for (var i = 1; i < _drops.Length; i++)
        {
            var n = Volatile.Read(ref _drops[i]);
            if (n != 0) yield return new((DropReason)i, n);
        }
    }
}
