using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace XenIo.Hypervisor.Abi;

// io/xs_wire.h: xenstore's message header, message types, error strings and the per-domain ring page.

/// <summary><c>struct xsd_sockmsg</c>, 16 bytes little-endian, followed by <see cref="Len"/> payload bytes.</summary>
[StructLayout(LayoutKind.Explicit, Size = Size)]
public struct XsdSockmsg
{
    public const int Size = 16;

    [FieldOffset(0)] public XsdSockmsgType Type;
    [FieldOffset(4)] public uint ReqId;
    [FieldOffset(8)] public uint TxId;
    [FieldOffset(12)] public uint Len;
}

/// <summary><c>enum xsd_sockmsg_type</c>.</summary>
public enum XsdSockmsgType : uint
{
    Control = 0,
    Debug = Control,
    Directory = 1,
    Read = 2,
    GetPerms = 3,
    Watch = 4,
    Unwatch = 5,
    TransactionStart = 6,
    TransactionEnd = 7,
    Introduce = 8,
    Release = 9,
    GetDomainPath = 10,
    Write = 11,
    Mkdir = 12,
    Rm = 13,
    SetPerms = 14,
    WatchEvent = 15,
    Error = 16,
    IsDomainIntroduced = 17,
    Resume = 18,
    SetTarget = 19,
    // 20 was XS_RESTRICT, removed.
    ResetWatches = 21,
    DirectoryPart = 22,
    TypeCount = 23,
    Invalid = 0xffff,
}

/// <summary>The error names xenstored sends as <c>"E…\0"</c> payloads of an XS_ERROR reply (<c>xsd_errors[]</c>).</summary>
public static class XsdErrors
{
    public const string EINVAL = "EINVAL";
    public const string EACCES = "EACCES";
    public const string EEXIST = "EEXIST";
    public const string EISDIR = "EISDIR";
    public const string ENOENT = "ENOENT";
    public const string ENOMEM = "ENOMEM";
    public const string ENOSPC = "ENOSPC";
    public const string EIO = "EIO";
    public const string ENOTEMPTY = "ENOTEMPTY";
    public const string ENOSYS = "ENOSYS";
    public const string EROFS = "EROFS";
    public const string EBUSY = "EBUSY";
    public const string EAGAIN = "EAGAIN";
    public const string EISCONN = "EISCONN";
    public const string E2BIG = "E2BIG";
    public const string EPERM = "EPERM";

    /// <summary>Every error in the order of <c>xsd_errors[]</c>.</summary>
    public static readonly string[] All =
        [EINVAL, EACCES, EEXIST, EISDIR, ENOENT, ENOMEM, ENOSPC, EIO, ENOTEMPTY, ENOSYS, EROFS, EBUSY, EAGAIN, EISCONN, E2BIG, EPERM];
}

public static class XenstoreLimits
{
    /// <summary>Largest payload; a larger one kills the connection.</summary>
    public const int PayloadMax = 4096;
    public const int AbsPathMax = 3072;
    public const int RelPathMax = 2048;
    public const int RingSize = 1024;
    public const uint ServerFeatureReconnection = 1;
    public const uint ServerFeatureError = 2;
    public const uint Connected = 0;
    public const uint Reconnect = 1;
    public const uint ErrorNone = 0;
    public const uint ErrorComm = 1;
    public const uint ErrorRingIdx = 2;
    public const uint ErrorProto = 3;
}

/// <summary><c>struct xenstore_domain_interface</c>: a guest's xenstore ring page (two 1 KiB byte rings).</summary>
[StructLayout(LayoutKind.Explicit, Size = 2076)]
public struct XenstoreDomainInterface
{
    public const int ReqOffset = 0;
    public const int RspOffset = 1024;
    public const int ReqConsOffset = 2048;
    public const int ReqProdOffset = 2052;
    public const int RspConsOffset = 2056;
    public const int RspProdOffset = 2060;
    public const int ServerFeaturesOffset = 2064;
    public const int ConnectionOffset = 2068;
    public const int ErrorOffset = 2072;

    [FieldOffset(ReqOffset)] public XenstoreRingBytes Req;
    [FieldOffset(RspOffset)] public XenstoreRingBytes Rsp;
    [FieldOffset(ReqConsOffset)] public uint ReqCons;
    [FieldOffset(ReqProdOffset)] public uint ReqProd;
    [FieldOffset(RspConsOffset)] public uint RspCons;
    [FieldOffset(RspProdOffset)] public uint RspProd;
    [FieldOffset(ServerFeaturesOffset)] public uint ServerFeatures;
    [FieldOffset(ConnectionOffset)] public uint Connection;
    [FieldOffset(ErrorOffset)] public uint Error;
}

[InlineArray(XenstoreLimits.RingSize)]
public struct XenstoreRingBytes
{
    private byte _b0;
}
