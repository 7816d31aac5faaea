using System.Buffers.Text;

namespace XenIo.Hypervisor.Store;

/// <summary>What a permission entry grants (xs_lib.h <c>XS_PERM_*</c>).</summary>
[Flags]
public enum XenstoreAccess : byte
{
    None = 0,
    Read = 1,
    Write = 2,
    Both = Read | Write,
    Owner = 4,
}

/// <summary>
/// One entry of a node's permission list: <c>n|r|w|b</c> followed by a domain id. The first entry names
/// the owner and is also what every domain not listed gets.
/// </summary>
public readonly record struct XenstorePermission(ushort DomId, XenstoreAccess Access)
{
    public override string ToString() => $"{Letter(Access)}{DomId}";

    public static char Letter(XenstoreAccess access) => (access & XenstoreAccess.Both) switch
    {
        XenstoreAccess.Read => 'r',
        XenstoreAccess.Write => 'w',
        XenstoreAccess.Both => 'b',
        _ => 'n',
    };

    /// <summary>Parses "b5"-style text; false on anything else (xenstore_strings_to_perms).</summary>
    public static bool TryParse(ReadOnlySpan<byte> text, out XenstorePermission permission)
    {
        permission = default;
        if (text.Length < 2) return false;
        XenstoreAccess access;
        switch (text[0])
        {
            case (byte)'n': access = XenstoreAccess.None; break;
            case (byte)'r': access = XenstoreAccess.Read; break;
            case (byte)'w': access = XenstoreAccess.Write; break;
            case (byte)'b': access = XenstoreAccess.Both; break;
            default: return false;
        }
        var digits = text[1..];
        foreach (var b in digits) if (b is < (byte)'0' or > (byte)'9') return false;
        if (!Utf8Parser.TryParse(digits, out uint dom, out var used) || used != digits.Length || dom > ushort.MaxValue) return false;
        permission = new XenstorePermission((ushort)dom, access);
        return true;
    }

    public static bool TryParse(string text, out XenstorePermission permission) =>
        TryParse(System.Text.Encoding.ASCII.GetBytes(text), out permission);

    /// <summary>Writes "b5" into <paramref name="dest"/>; returns the bytes written.</summary>
    public int Format(Span<byte> dest)
    {
        dest[0] = (byte)Letter(Access);
        Utf8Formatter.TryFormat(DomId, dest[1..], out var n);
        return n + 1;
    }

    /// <summary>
    /// What connection <paramref name="domId"/> may do on a node with <paramref name="perms"/>
    /// (xenstored's perm_for_conn): dom0 and the owner get everything, a listed domain its entry,
    /// anyone else the owner entry's access.
    /// </summary>
    public static XenstoreAccess For(ushort domId, bool privileged, ReadOnlySpan<XenstorePermission> perms)
    {
        if (privileged || perms.Length == 0 || perms[0].DomId == domId)
            return XenstoreAccess.Both | XenstoreAccess.Owner;
        for (var i = 1; i < perms.Length; i++)
            if (perms[i].DomId == domId) return perms[i].Access & XenstoreAccess.Both;
        return perms[0].Access & XenstoreAccess.Both;
    }
}
