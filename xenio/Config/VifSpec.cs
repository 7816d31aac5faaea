using System.Globalization;
using XenIo.Hypervisor.Domains;

namespace XenIo.Cli.Config;

/// <summary>
/// A <c>vifspec</c> (Xen's xl-network-configuration): comma-separated <c>key=value</c> pairs, all
/// optional. Pure: one string in, a <see cref="VifConfig"/> or a message naming the bad part out.
/// </summary>
public static class VifSpec
{
    /// <summary>Keys xl accepts that XenIo ignores (HVM emulation and driver domains), with why.</summary>
    private static readonly Dictionary<string, string> s_ignored = new(StringComparer.Ordinal)
    {
        ["backend"] = "driver domains are not supported: the backend is always dom0",
        ["gatewaydev"] = "routing scripts are not run",
        ["netdev"] = "routing scripts are not run (netdev is xl's deprecated alias of gatewaydev)",
        ["trusted"] = "no effect in XenIo",
        ["untrusted"] = "no effect in XenIo",
    };

    /// <param name="defaultBridge">The bridge when the spec names none (the instance's default; xenbr0 when null).</param>
    public static VifConfig Parse(string spec, int devid, Action<string>? warn = null, string? defaultBridge = null)
    {
        var vif = defaultBridge is null ? new VifConfig { Devid = devid } : new VifConfig { Devid = devid, Bridge = defaultBridge };
        if (spec.Trim().Length == 0) return vif;
        foreach (var rawPart in spec.Split(','))
        {
            var part = rawPart.Trim();
            if (part.Length == 0) continue;
            int eq = part.IndexOf('=', StringComparison.Ordinal);
            var key = eq < 0 ? part : part[..eq].Trim();
            var value = eq < 0 ? "" : part[(eq + 1)..].Trim();
            vif = key switch
            {
                "mac" => vif with { Mac = ParseMac(value) },
                "bridge" => vif with { Bridge = NonEmpty(key, value, "a bridge name such as xenbr0") },
                "ip" => vif with { Ip = ParseIps(value) },
                "rate" => vif with { Rate = ParseRate(value) },
                "vifname" => vif with { Vifname = ParseInterfaceName(value) },
                "mtu" => vif with { Mtu = ParseInt(key, value, 68, 65535) },
                "vlan" => vif with { Vlan = ParseInt(key, value, 1, 4094) },
                "script" => vif with { Script = NonEmpty(key, value, "a script path") },
                "type" => vif with { Type = value is "vif" or "ioemu" ? value : throw Bad(key, value, "vif or ioemu") },
                "model" => vif with { Model = NonEmpty(key, value, "a model name") },
                "devid" => vif with { Devid = ParseInt(key, value, 0, 65535) },
                _ when s_ignored.TryGetValue(key, out var why) => Warn(vif, warn, $"vif key '{key}' ignored: {why}"),
                _ => throw new FormatException(
                    $"unknown vif key '{key}' (valid: mac, bridge, ip, rate, vifname, mtu, vlan, script, type, model, devid)"),
            };
        }
        return vif;
    }

    private static VifConfig Warn(VifConfig vif, Action<string>? warn, string message)
    {
        warn?.Invoke(message);
        return vif;
    }

    /// <summary>Six pairs of hex digits separated by colons; multicast addresses are refused.</summary>
    public static string ParseMac(string value)
    {
        var parts = value.Split(':');
        if (parts.Length != 6 || parts.Any(p => p.Length != 2 || !p.All(Uri.IsHexDigit)))
            throw Bad("mac", value, "six pairs of hex digits separated by colons, e.g. 00:16:3e:12:34:56");
        var first = byte.Parse(parts[0], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture);
        if ((first & 1) != 0) throw Bad("mac", value, "a unicast address (the low bit of the first byte clear)");
        return value.ToLowerInvariant();
    }

    /// <summary>
    /// xl's <c>rate=RATE[@INTERVAL]</c>: RATE is a number with B, KB, MB, GB (bytes) or b, Kb, Mb, Gb
    /// (bits) and <c>/s</c>; INTERVAL a number with s, ms or us, default 50 ms. Decimal multiples, as xl.
    /// </summary>
    public static VifRate ParseRate(string value)
    {
        const string valid = "a rate such as 10Mb/s or 1MB/s@20ms (units B KB MB GB b Kb Mb Gb per s; interval s, ms or us)";
        var at = value.IndexOf('@', StringComparison.Ordinal);
        var ratePart = at < 0 ? value : value[..at];
        var intervalPart = at < 0 ? null : value[(at + 1)..];
        if (!ratePart.EndsWith("/s", StringComparison.Ordinal)) throw Bad("rate", value, valid);
        var (number, unit) = SplitNumber(ratePart[..^2]);
        if (number is null) throw Bad("rate", value, valid);
        decimal multiplier = unit switch
        {
            "B" => 1, "KB" => 1e3m, "MB" => 1e6m, "GB" => 1e9m,
            "b" => 1m / 8, "Kb" => 1e3m / 8, "Mb" => 1e6m / 8, "Gb" => 1e9m / 8,
            _ => throw Bad("rate", value, valid),
        };
        decimal bytesPerSecond = number.Value * multiplier;
        decimal intervalUs = 50_000;
        if (intervalPart is not null)
        {
            var (n, u) = SplitNumber(intervalPart);
            if (n is null) throw Bad("rate", value, valid);
            intervalUs = u switch
            {
                "s" => n.Value * 1_000_000,
                "ms" => n.Value * 1_000,
                "us" => n.Value,
                _ => throw Bad("rate", value, valid),
            };
        }
        if (bytesPerSecond <= 0 || intervalUs < 1 || intervalUs > uint.MaxValue)
            throw Bad("rate", value, "a positive rate and an interval from 1us to about 71 minutes");
        var bytesPerInterval = decimal.Floor(bytesPerSecond * intervalUs / 1_000_000);
        if (bytesPerInterval < 1 || bytesPerInterval > ulong.MaxValue)
            throw Bad("rate", value, "a rate of at least one byte per interval");
        return new VifRate((ulong)bytesPerInterval, (uint)intervalUs);
    }

    private static (decimal? Number, string Unit) SplitNumber(string text)
    {
        int i = 0;
        while (i < text.Length && (char.IsAsciiDigit(text[i]) || text[i] == '.')) i++;
        if (i == 0 || !decimal.TryParse(text.AsSpan(0, i), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var n))
            return (null, "");
        return (n, text[i..]);
    }

    /// <summary>One or more IPv4/IPv6 addresses, each with an optional prefix length, separated by spaces.</summary>
    private static string ParseIps(string value)
    {
        var items = value.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (items.Length == 0) throw Bad("ip", value, "an address such as 198.18.0.1 or 198.18.0.1/24");
        foreach (var item in items)
        {
            var slash = item.IndexOf('/', StringComparison.Ordinal);
            var addr = slash < 0 ? item : item[..slash];
            if (!TryParseIp(addr, out var ip))
                throw Bad("ip", value, "addresses such as 198.18.0.1/24 or 2001:db8::1/64, separated by spaces");
            if (slash >= 0)
            {
                int max = ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? 128 : 32;
                if (!int.TryParse(item.AsSpan(slash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var len) || len > max)
                    throw Bad("ip", value, $"a prefix length from 0 to {max}");
            }
        }
        return string.Join(' ', items);
    }

    /// <summary>
    /// An IPv4 address in full dotted-quad form or an IPv6 address. IPAddress.TryParse alone also
    /// takes inet_aton's short forms ("198.18.0"), which are almost always a typo in a config file.
    /// </summary>
    public static bool TryParseIp(string text, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out System.Net.IPAddress? ip)
    {
        ip = null;
        if (!System.Net.IPAddress.TryParse(text, out var parsed)) return false;
        bool v6 = parsed.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6;
        if (v6 != text.Contains(':')) return false;
        if (!v6 && (text.Split('.').Length != 4 || text.Split('.').Any(p => p.Length == 0 || !p.All(char.IsAsciiDigit)))) return false;
        ip = parsed;
        return true;
    }

    /// <summary>A Linux interface name: 1..15 characters, no '/', ':' or white space.</summary>
    public static string ParseInterfaceName(string value)
    {
        if (value.Length is 0 or > 15 || value.Any(c => c is '/' or ':' || char.IsWhiteSpace(c) || c < 0x21 || c > 0x7e) || value is "." or "..")
            throw Bad("vifname", value, "an interface name of 1 to 15 characters without '/', ':' or spaces");
        return value;
    }

    private static int ParseInt(string key, string value, int min, int max) =>
        int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n >= min && n <= max
            ? n
            : throw Bad(key, value, $"a whole number from {min} to {max}");

    private static string NonEmpty(string key, string value, string valid) =>
        value.Length > 0 ? value : throw Bad(key, value, valid);

    private static FormatException Bad(string key, string value, string valid) =>
        new($"bad {key} '{value}': expected {valid}");
}
