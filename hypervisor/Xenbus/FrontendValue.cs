using System.Globalization;

namespace XenIo.Hypervisor.Xenbus;

/// <summary>Reading what a frontend wrote into xenstore: guest-controlled text, parsed strictly and logged safely.</summary>
public static class FrontendValue
{
    /// <summary>A decimal number of at most 10 digits, nothing else (no sign, spaces or hex), as a uint.</summary>
    public static bool TryNumber(string s, out uint value) =>
        uint.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out value) && s.Length <= 10;

    /// <summary>Guest-written text for a log line: at most 32 characters, control characters shown as '?'.</summary>
    public static string Clip(string s)
    {
        var t = s.Length > 32 ? s[..32] + "…" : s;
        return string.Create(t.Length, t, static (span, src) =>
        {
            for (var i = 0; i < src.Length; i++) span[i] = char.IsControl(src[i]) ? '?' : src[i];
        });
    }
}
