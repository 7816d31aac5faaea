namespace XenIo.Netback.Vif;

/// <summary>One queue's rings and event channels as the frontend published them. Not split: both ports are the same.</summary>
public sealed record VifQueueRings(int Queue, uint TxRingRef, uint RxRingRef, uint TxEventChannel, uint RxEventChannel)
{
    public bool SplitEventChannels => TxEventChannel != RxEventChannel;
}

/// <summary>What the frontend said it can do (its <c>feature-*</c> and <c>request-*</c> keys).</summary>
public sealed record VifFrontendFeatures
{
    public bool Sg { get; init; }
    public bool GsoTcpV4 { get; init; }
    public bool GsoTcpV6 { get; init; }
    /// <summary>False when the frontend wrote <c>feature-no-csum-offload=1</c>: it must get complete checksums.</summary>
    public bool CsumOffload { get; init; } = true;
    public bool Ipv6CsumOffload { get; init; }
    public bool RxNotify { get; init; }
    public bool MulticastControl { get; init; }
}

/// <summary>Everything needed to connect a vif's data path.</summary>
public sealed record VifConnectSetup(VifFrontendFeatures Features, IReadOnlyList<VifQueueRings> Queues);
