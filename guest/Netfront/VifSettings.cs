using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace XenIo.Guest.Netfront;

/// <summary>One address of a vif's <c>ip=</c> with its prefix length.</summary>
public readonly record struct VifAddress(IPAddress Address, int PrefixLength)
{
    public override string ToString() => $"{Address}/{PrefixLength}";
}

/// <summary>
/// What the toolstack tells a vif's frontend, parsed: the MAC and MTU from the frontend directory
/// (libxl writes <c>mac</c> and <c>mtu</c> there), the addresses of the backend's <c>ip</c> key
/// (space-separated, each optionally <c>/prefix</c>: IPv4 without one is a /24 and IPv6 a /64, so two
/// guests given plain addresses on one bridge reach each other) and the optional gateway. The values
/// come from dom0 through nodes the guest cannot write, but are still parsed strictly: a bad one is
/// refused with a reason, never half applied.
/// </summary>
public sealed record VifSettings(byte[] Mac, int Mtu, IReadOnlyList<VifAddress> Addresses, IPAddress? Gateway)
{
    public const int DefaultMtu = 1500;
    public const int MinMtu = 68;
    public const int MaxMtu = 65535 - 14;
    private const int MaxAddresses = 16;

    public static bool TryParseMac(string? text, out byte[] mac)
    {
        mac = new byte[6];
        if (text is null || text.Length != 17) return false;
        for (var i = 0; i < 6; i++)
        {
            if (i > 0 && text[i * 3 - 1] != ':') return false;
            if (!byte.TryParse(text.AsSpan(i * 3, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out mac[i])) return false;
        }
        // A multicast source address would be dropped by every switch (and netback's anti-spoofing).
        return (mac[0] & 1) == 0 && mac.Any(b => b != 0);
    }

    public static bool TryParseMtu(string? text, out int mtu)
    {
        mtu = DefaultMtu;
        if (text is null) return true;
        return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out mtu) && mtu is >= MinMtu and <= MaxMtu;
    }

    /// <summary>Parses the <c>ip</c> key: empty or absent is no address.</summary>
    public static bool TryParseAddresses(string? text, out List<VifAddress> addresses, out string? error)
    {
        addresses = [];
        error = null;
        if (string.IsNullOrWhiteSpace(text)) return true;
        foreach (var item in text.Split([' ', ','], StringSplitOptions.RemoveEmptyEntries))
        {
            if (addresses.Count == MaxAddresses) { error = $"more than {MaxAddresses} addresses"; return false; }
            if (!TryParseAddress(item, out var address)) { error = $"'{item}' is not an address with an optional /prefix"; return false; }
            addresses.Add(address);
        }
        return true;
    }

    public static bool TryParseAddress(string item, out VifAddress address)
    {
        address = default;
        var slash = item.IndexOf('/', StringComparison.Ordinal);
        var host = slash < 0 ? item : item[..slash];
        if (!IPAddress.TryParse(host, out var ip) || ip.AddressFamily is not (AddressFamily.InterNetwork or AddressFamily.InterNetworkV6)
            || host.Contains('%', StringComparison.Ordinal))
            return false;
        var max = ip.AddressFamily == AddressFamily.InterNetwork ? 32 : 128;
        var prefix = ip.AddressFamily == AddressFamily.InterNetwork ? 24 : 64;
        if (slash >= 0 && !(int.TryParse(item.AsSpan(slash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out prefix) && prefix >= 1 && prefix <= max))
            return false;
        address = new VifAddress(ip, prefix);
        return true;
    }

    /// <summary>A gateway: one IPv4 or IPv6 address without a prefix; empty or absent is none.</summary>
    public static bool TryParseGateway(string? text, out IPAddress? gateway)
    {
        gateway = null;
        if (string.IsNullOrWhiteSpace(text)) return true;
        text = text.Trim();
        if (!IPAddress.TryParse(text, out var ip) || ip.AddressFamily is not (AddressFamily.InterNetwork or AddressFamily.InterNetworkV6)
            || text.Contains('/', StringComparison.Ordinal) || text.Contains('%', StringComparison.Ordinal))
            return false;
        gateway = ip;
        return true;
    }

    /// <summary>True when <paramref name="ip"/> is inside one of the vif's subnets (a gateway must be on-link).</summary>
    public bool OnLink(IPAddress ip) => Addresses.Any(a => SameSubnet(a, ip));

    public static bool SameSubnet(VifAddress network, IPAddress ip)
    {
        if (network.Address.AddressFamily != ip.AddressFamily) return false;
        var a = network.Address.GetAddressBytes();
        var b = ip.GetAddressBytes();
        var bits = network.PrefixLength;
        for (var i = 0; i < a.Length && bits > 0; i++, bits -= 8)
        {
            var mask = bits >= 8 ? 0xFF : (byte)(0xFF << (8 - bits));
            if ((a[i] & mask) != (b[i] & mask)) return false;
        }
        return true;
    }

    public string MacText => string.Join(':', Mac.Select(b => b.ToString("x2", CultureInfo.InvariantCulture)));
}
