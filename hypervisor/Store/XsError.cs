using System.Text;
using XenIo.Hypervisor.Abi;

namespace XenIo.Hypervisor.Store;

/// <summary>The errors xenstored answers with (io/xs_wire.h <c>xsd_errors[]</c>); <see cref="None"/> is success.</summary>
public enum XsError : byte
{
    None = 0,
    EINVAL,
    EACCES,
    EEXIST,
    EISDIR,
    ENOENT,
    ENOMEM,
    ENOSPC,
    EIO,
    ENOTEMPTY,
    ENOSYS,
    EROFS,
    EBUSY,
    EAGAIN,
    EISCONN,
    E2BIG,
    EPERM,
}

public static class XsErrorNames
{
    // Payloads of XS_ERROR replies, "EXXX\0", built once.
    private static readonly byte[][] s_payloads = BuildPayloads();

    private static byte[][] BuildPayloads()
    {
        var all = new byte[XsdErrors.All.Length + 1][];
        all[0] = [];
        for (var i = 0; i < XsdErrors.All.Length; i++) all[i + 1] = Encoding.ASCII.GetBytes(XsdErrors.All[i] + "\0");
        return all;
    }

    /// <summary>The wire payload of an XS_ERROR reply for <paramref name="error"/>, NUL included.</summary>
    public static ReadOnlySpan<byte> Payload(XsError error) => s_payloads[(int)error];

    public static string Name(XsError error) => error == XsError.None ? "OK" : XsdErrors.All[(int)error - 1];

    /// <summary>Parses an XS_ERROR payload ("EACCES\0"); unknown names map to EIO.</summary>
    public static XsError Parse(ReadOnlySpan<byte> payload)
    {
        var nul = payload.IndexOf((byte)0);
        if (nul >= 0) payload = payload[..nul];
        for (var i = 0; i < XsdErrors.All.Length; i++)
            if (payload.SequenceEqual(s_payloads[i + 1].AsSpan(0, s_payloads[i + 1].Length - 1))) return (XsError)(i + 1);
        return XsError.EIO;
    }
}
