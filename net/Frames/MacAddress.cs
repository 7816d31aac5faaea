using System.Globalization;

namespace XenIo.Net.Frames;

/// <summary>An Ethernet address as a 48-bit number (the first byte on the wire highest), and as text.</summary>
public static class MacAddress
{
    /// <summary>Six pairs of lower-case hex digits: <c>02:00:00:00:00:01</c>, or with '-' as xenstore keys spell it.</summary>
    public static string Format(ulong mac, char separator = ':') =>
        string.Join(separator, Enumerable.Range(0, 6).Select(i => ((mac >> (40 - 8 * i)) & 0xFF).ToString("x2", CultureInfo.InvariantCulture)));

    /// <summary>Six pairs of hex digits (either case), all separated by ':', or all by '-' when <paramref name="dashes"/> allows it.</summary>
    public static bool TryParse(string? text, out ulong mac, bool dashes = false)
    {
        mac = 0;
        if (text is null || text.Length != 17 || !(text[2] == ':' || (dashes && text[2] == '-'))) return false;
        for (var i = 0; i < 6; i++)
        {
            if (i > 0 && text[3 * i - 1] != text[2]) return false;
            if (!byte.TryParse(text.AsSpan(3 * i, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var b)) return false;
            mac = mac << 8 | b;
        }
        return true;
    }
}
