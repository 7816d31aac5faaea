using XenIo.Hypervisor.Abi;

namespace XenIo.Blkback.Xenbus;

/// <summary>What the vbd backend state machine asks its xenstore and ring layers to do, in order.</summary>
public abstract record VbdAction;

/// <summary>Write <see cref="Value"/> at <see cref="Key"/>, relative to the backend directory.</summary>
public sealed record VbdWriteKey(string Key, string Value) : VbdAction;

/// <summary>Write the backend's <c>state</c> key.</summary>
public sealed record VbdSwitchState(XenbusState State) : VbdAction;

/// <summary>
/// Map the frontend's rings and bind its event channels; then report back with
/// <see cref="VbdBackendMachine.OnRingsConnected"/> or <see cref="VbdBackendMachine.OnRingsFailed"/>.
/// </summary>
public sealed record VbdConnectRings(VbdRingSetup Setup) : VbdAction;

/// <summary>Stop serving and unmap every ring (idempotent on the caller's side too).</summary>
public sealed record VbdDisconnectRings : VbdAction;

/// <summary>One log line and the <c>error</c> key, as <c>xenbus_dev_fatal</c> does.</summary>
public sealed record VbdReportError(string Message) : VbdAction;

/// <summary>One queue's rings: <see cref="RingRefs"/> has 2^ring-page-order grant refs.</summary>
public sealed record VbdQueueRings(int Queue, IReadOnlyList<uint> RingRefs, uint EventChannel);

/// <summary>What the frontend published: everything needed to map its rings.</summary>
public sealed record VbdRingSetup(int RingPageOrder, IReadOnlyList<VbdQueueRings> Queues, bool Persistent, string Protocol)
{
    public int RingPages => 1 << RingPageOrder;
}

/// <summary>What this vbd offers, published as xenbus keys (Linux xen-blkback's names and meanings).</summary>
public sealed record VbdFeatures
{
    public int MaxIndirectSegments { get; init; } = 256;
    public int MaxQueues { get; init; } = 4;
    public int MaxRingPageOrder { get; init; } = RingGeometry.MaxRingPageOrder;
    public bool FlushCache { get; init; } = true;
    public bool Discard { get; init; }
    public int DiscardGranularity { get; init; } = 4096;
    public int DiscardAlignment { get; init; }
    public bool DiscardSecure { get; init; }
    public bool Barrier { get; init; } = true;
    public bool Persistent { get; init; } = true;

    /// <summary>Size in 512-byte units, whatever the sector size.</summary>
    public required ulong Sectors { get; init; }

    /// <summary>VDISK_CDROM 1 | VDISK_REMOVABLE 2 | VDISK_READONLY 4.</summary>
    public int Info { get; init; }
    public int SectorSize { get; init; } = 512;
    public int PhysicalSectorSize { get; init; } = 512;

    /// <summary>What an opened image offers: size, sector sizes, read-only/CD-ROM info, discard geometry.</summary>
    public static VbdFeatures ForImage(Images.RawImage image, int maxQueues = 4) => new()
    {
        MaxQueues = maxQueues,
        MaxIndirectSegments = image.Geometry.MaxIndirectSegments,
        Sectors = image.Geometry.Sectors,
        Info = image.Info,
        SectorSize = image.Geometry.SectorSize,
        PhysicalSectorSize = image.PhysicalSectorSize,
        Discard = image.Geometry.DiscardEnabled,
        DiscardGranularity = image.DiscardGranularity,
        DiscardAlignment = image.DiscardAlignment,
        DiscardSecure = image.Geometry.DiscardSecure,
        // A read-only disk has nothing to flush or order; Linux still offers flush, which is harmless.
        Barrier = !image.Geometry.ReadOnly,
    };
}
