using XenIo.Hypervisor.Abi;

namespace XenIo.Hypervisor.Store;

/// <summary>
/// Xenstore's path rules (xenstored's canonicalize): characters <c>A-Za-z0-9-/_@</c>; a relative path is
/// taken below the connection's <c>/local/domain/&lt;id&gt;</c>; no trailing slash except the root, no
/// <c>//</c>; <c>@</c>-prefixed names only where special watch paths are allowed; XENSTORE_ABS_PATH_MAX
/// for everyone, and for guests XENSTORE_REL_PATH_MAX below <c>/local/domain/&lt;id&gt;/</c>.
/// </summary>
public static class XenstorePath
{
    /// <summary>Big enough for any canonical path plus a relative prefix.</summary>
    public const int BufferChars = XenstoreLimits.AbsPathMax + 32;

    public const string IntroduceDomain = "@introduceDomain";
    public const string ReleaseDomain = "@releaseDomain";

    public static bool IsValidChar(byte c) =>
        c is >= (byte)'a' and <= (byte)'z' or >= (byte)'A' and <= (byte)'Z' or >= (byte)'0' and <= (byte)'9'
          or (byte)'-' or (byte)'/' or (byte)'_' or (byte)'@';

    /// <summary>
    /// Turns the raw bytes of a path argument (without its NUL) into the absolute path in
    /// <paramref name="dest"/>. Returns EINVAL for anything xenstored rejects.
    /// </summary>
    public static XsError Canonicalize(ReadOnlySpan<byte> raw, ReadOnlySpan<char> domainPath, bool privileged,
        bool allowSpecial, Span<char> dest, out int length, out bool relative)
    {
        length = 0;
        relative = false;
        if (raw.Length > XenstoreLimits.AbsPathMax) return XsError.EINVAL;
        foreach (var c in raw) if (!IsValidChar(c)) return XsError.EINVAL;
        if (raw.Length > 0 && raw[0] == (byte)'@')
        {
            if (!allowSpecial) return XsError.EINVAL;
            for (var i = 0; i < raw.Length; i++) dest[i] = (char)raw[i];
            length = raw.Length;
            return XsError.None;
        }
        var n = 0;
        if (raw.Length == 0 || raw[0] != (byte)'/')
        {
            relative = true;
            domainPath.CopyTo(dest);
            n = domainPath.Length;
            dest[n++] = '/';
        }
        for (var i = 0; i < raw.Length; i++) dest[n + i] = (char)raw[i];
        n += raw.Length;
        var name = dest[..n];
        if (n > 1 && name[^1] == '/') return XsError.EINVAL;
        if (name.IndexOf("//".AsSpan()) >= 0) return XsError.EINVAL;
        if (n > XenstoreLimits.AbsPathMax) return XsError.EINVAL;
        if (!privileged && n - LocalOffset(name) > XenstoreLimits.RelPathMax) return XsError.EINVAL;
        length = n;
        return XsError.None;
    }

    /// <summary>Length of a leading <c>/local/domain/&lt;id&gt;/</c> (up to 5 digits), else 0.</summary>
    public static int LocalOffset(ReadOnlySpan<char> name)
    {
        const string prefix = "/local/domain/";
        if (!name.StartsWith(prefix)) return 0;
        var i = prefix.Length;
        var digits = 0;
        while (i < name.Length && digits < 5 && char.IsAsciiDigit(name[i])) { i++; digits++; }
        if (digits == 0 || i >= name.Length || name[i] != '/') return 0;
        return i + 1;
    }

    /// <summary>The parent path ("/" for a top-level node).</summary>
    public static ReadOnlySpan<char> Parent(ReadOnlySpan<char> path)
    {
        var slash = path.LastIndexOf('/');
        return slash <= 0 ? "/" : path[..slash];
    }

    public static ReadOnlySpan<char> BaseName(ReadOnlySpan<char> path) => path[(path.LastIndexOf('/') + 1)..];

    public static string Child(string parent, string name) => parent == "/" ? "/" + name : parent + "/" + name;

    /// <summary>Is <paramref name="child"/> equal to or below <paramref name="parent"/>? (watch.c is_child)</summary>
    public static bool IsAtOrBelow(ReadOnlySpan<char> child, ReadOnlySpan<char> parent)
    {
        if (!child.StartsWith(parent)) return false;
        if (parent.Length == 1) return true; // "/" covers everything
        return child.Length == parent.Length || child[parent.Length] == '/';
    }

    public static string DomainPath(uint domId) => "/local/domain/" + domId.ToString(System.Globalization.CultureInfo.InvariantCulture);
}
