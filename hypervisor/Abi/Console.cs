using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace XenIo.Hypervisor.Abi;

/// <summary>
/// <c>struct xencons_interface</c> (io/console.h), 3088 bytes at the start of the console page.
/// <c>in</c> carries bytes to the guest, <c>out</c> bytes from it; indices are free-running and
/// masked by the ring size. A ring claiming <c>prod - cons &gt; size</c> is ignored.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 3088)]
public struct XenconsInterface
{
    public const int InSize = 1024;
    public const int OutSize = 2048;
    public const int InOffset = 0;
    public const int OutOffset = 1024;
    public const int InConsOffset = 3072;
    public const int InProdOffset = 3076;
    public const int OutConsOffset = 3080;
    public const int OutProdOffset = 3084;

    [FieldOffset(InOffset)] public XenconsIn In;
    [FieldOffset(OutOffset)] public XenconsOut Out;
    [FieldOffset(InConsOffset)] public uint InCons;
    [FieldOffset(InProdOffset)] public uint InProd;
    [FieldOffset(OutConsOffset)] public uint OutCons;
    [FieldOffset(OutProdOffset)] public uint OutProd;
}

[InlineArray(XenconsInterface.InSize)]
public struct XenconsIn
{
    private byte _b0;
}

[InlineArray(XenconsInterface.OutSize)]
public struct XenconsOut
{
    private byte _b0;
}
