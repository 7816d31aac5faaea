using System.Runtime.InteropServices;

namespace XenIo.Hypervisor.Abi;

// io/netif.h: the Xen virtual NIC rings (tx: guest → backend, rx: backend → guest).

/// <summary><c>struct netif_tx_request</c>, 12 bytes. In a packet's first slot <see cref="Size"/> is the whole packet.</summary>
[StructLayout(LayoutKind.Explicit, Size = 12)]
public struct NetifTxRequest
{
    [FieldOffset(0)] public uint Gref;
    [FieldOffset(4)] public ushort Offset;
    [FieldOffset(6)] public NetTxFlags Flags;
    [FieldOffset(8)] public ushort Id;
    [FieldOffset(10)] public ushort Size;
}

/// <summary><c>struct netif_tx_response</c>, 4 bytes.</summary>
[StructLayout(LayoutKind.Explicit, Size = 4)]
public struct NetifTxResponse
{
    [FieldOffset(0)] public ushort Id;
    [FieldOffset(2)] public short Status;
}

/// <summary><c>struct netif_rx_request</c>, 8 bytes.</summary>
[StructLayout(LayoutKind.Explicit, Size = 8)]
public struct NetifRxRequest
{
    [FieldOffset(0)] public ushort Id;
    [FieldOffset(2)] public ushort Pad;
    [FieldOffset(4)] public uint Gref;
}

/// <summary><c>struct netif_rx_response</c>, 8 bytes; goes in the slot of its request. <see cref="Status"/> is a byte count or a negative <see cref="NetifStatus"/>.</summary>
[StructLayout(LayoutKind.Explicit, Size = 8)]
public struct NetifRxResponse
{
    [FieldOffset(0)] public ushort Id;
    [FieldOffset(2)] public ushort Offset;
    [FieldOffset(4)] public NetRxFlags Flags;
    [FieldOffset(6)] public short Status;
}

/// <summary><c>struct netif_extra_info</c>, 8 bytes: follows a request or response flagged extra_info.</summary>
[StructLayout(LayoutKind.Explicit, Size = 8)]
public struct NetifExtraInfo
{
    [FieldOffset(0)] public NetifExtraType Type;
    [FieldOffset(1)] public NetifExtraFlags Flags;

    // u.gso
    [FieldOffset(2)] public ushort GsoSize;
    [FieldOffset(4)] public NetifGsoType GsoType;
    [FieldOffset(5)] public byte GsoPad;
    [FieldOffset(6)] public ushort GsoFeatures;

    // u.mcast.addr[6] starts at 2; u.hash: type @2, algorithm @3, value[4] @4.
    [FieldOffset(2)] public MacAddressBytes McastAddr;
    [FieldOffset(2)] public byte HashType;
    [FieldOffset(3)] public byte HashAlgorithm;
    [FieldOffset(4)] public uint HashValue;

    public const int UnionOffset = 2;
}

/// <summary>Six MAC address bytes inline (the <c>addr[6]</c> of netif's mcast extra).</summary>
[System.Runtime.CompilerServices.InlineArray(6)]
public struct MacAddressBytes
{
    private byte _b0;
}

[Flags]
public enum NetTxFlags : ushort
{
    None = 0,
    CsumBlank = 1 << 0,
    DataValidated = 1 << 1,
    MoreData = 1 << 2,
    ExtraInfo = 1 << 3,
}

[Flags]
public enum NetRxFlags : ushort
{
    None = 0,
    DataValidated = 1 << 0,
    CsumBlank = 1 << 1,
    MoreData = 1 << 2,
    ExtraInfo = 1 << 3,
    GsoPrefix = 1 << 4,
}

public enum NetifExtraType : byte
{
    None = 0,
    Gso = 1,
    McastAdd = 2,
    McastDel = 3,
    Hash = 4,
}

[Flags]
public enum NetifExtraFlags : byte
{
    None = 0,
    More = 1 << 0,
}

public enum NetifGsoType : byte
{
    None = 0,
    TcpV4 = 1,
    TcpV6 = 2,
}

/// <summary><c>NETIF_RSP_*</c>.</summary>
public static class NetifStatus
{
    public const short Dropped = -2;
    public const short Error = -1;
    public const short Okay = 0;
    /// <summary>Response for a slot that carried an extra_info segment.</summary>
    public const short Null = 1;
}

public static class NetifLimits
{
    /// <summary>Largest packet a tx request's size field can describe.</summary>
    public const int MaxPacketSize = 0xFFFF;

    /// <summary><c>XEN_NETBK_LEGACY_SLOTS_MAX</c> / <c>XEN_NETIF_NR_SLOTS_MIN</c>: slots per packet every backend must accept.</summary>
    public const int MinSlotsPerPacket = 18;

    public const int TxRingSlots = 256;
    public const int RxRingSlots = 256;
}
