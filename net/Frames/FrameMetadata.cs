using System.Runtime.CompilerServices;

namespace XenIo.Net.Frames;

/// <summary>What a port knows about a frame's transport checksum when it hands the frame over.</summary>
public enum ChecksumState : byte
{
    /// <summary>Nothing known: the checksum field holds whatever the sender wrote.</summary>
    None = 0,

    /// <summary>
    /// Partial (Linux CHECKSUM_PARTIAL, virtio NEEDS_CSUM, netif csum_blank): the field at
    /// <c>CsumStart + CsumOffset</c> holds the pseudo-header sum and the checksum over
    /// <c>[CsumStart, end)</c> still has to be folded in.
    /// </summary>
    Partial = 1,

    /// <summary>Already checked by the sender (virtio DATA_VALID, netif data_validated).</summary>
    Validated = 2,
}

/// <summary>The segmentation offload a large frame is waiting for (virtio_net_hdr gso_type).</summary>
public enum GsoType : byte
{
    None = 0,
    TcpV4 = 1,
    TcpV6 = 4,
}

/// <summary>
/// Everything the data plane carries beside a frame's bytes. A plain struct so it travels in pooled
/// buffers and batches without allocation. <see cref="VlanTci"/> is the 802.1Q tag control
/// information when <see cref="HasVlan"/> (the tag itself is not in the bytes).
/// </summary>
public struct FrameMetadata
{
    public int Length;
    public bool HasVlan;
    // Checksum and Gso sit side by side, so HasOffload tests both with one load.
    public ChecksumState Checksum;
    public GsoType Gso;
    public ushort VlanTci;
    public ushort CsumStart;
    public ushort CsumOffset;
    public ushort GsoSize;
    /// <summary>Length of the headers before a GSO frame's payload (virtio hdr_len); a hint, recomputed when segmenting.</summary>
    public ushort HeaderLength;
    /// <summary>Index of the port the frame came in on; -1 when it did not come from a port.</summary>
    public int IngressPort;

    public readonly ushort VlanId => (ushort)(VlanTci & 0x0FFF);

    public readonly bool IsGso => Gso != GsoType.None;

    /// <summary>
    /// A checksum left for the receiver to complete or a GSO frame to segment: what a port that cannot
    /// take offloads needs done first. One 16-bit load over <see cref="Checksum"/> and <see cref="Gso"/>:
    /// Partial is the only checksum state with bit 0 set, and any GSO type is non-zero.
    /// </summary>
    public readonly bool HasOffload =>
        (Unsafe.As<ChecksumState, ushort>(ref Unsafe.AsRef(in Checksum)) & (BitConverter.IsLittleEndian ? 0xFF01 : 0x01FF)) != 0;

    public static FrameMetadata Plain(int length, int ingressPort = -1) =>
        new() { Length = length, IngressPort = ingressPort };
}
