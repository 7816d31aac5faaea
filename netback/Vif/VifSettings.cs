using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using XenIo.Net.Frames;

namespace XenIo.Netback.Vif;

/// <summary>
/// The toolstack's keys of one vif backend (libxl's <c>mac</c>, <c>ip</c>, <c>rate</c>, <c>mtu</c>,
/// <c>vlan</c>, <c>bridge</c>, <c>vifname</c>), parsed. They are written by dom0 (hyperd), not by the
/// guest, but are still parsed strictly: a bad value is reported and that feature left off.
/// </summary>
public sealed record VifSettings
{
    /// <summary>The vif's MAC as a 48-bit number; 0 when unset (then source MACs are not checked).</summary>
    public ulong Mac { get; init; }

    /// <summary>IPv4 addresses the guest may send from (<c>ip=</c>); empty: not checked.</summary>
    public uint[] Ipv4 { get; init; } = [];

    public VifRateLimit? Rate { get; init; }
    public int Mtu { get; init; } = 1500;
    public ushort? Vlan { get; init; }
    public string Bridge { get; init; } = "xenbr0";
    public string? Vifname { get; init; }

    /// <summary>Value equality including the address list (a record compares arrays by reference).</summary>
    public bool SameAs(VifSettings other) =>
        Mac == other.Mac && Ipv4.AsSpan().SequenceEqual(other.Ipv4) && Equals(Rate, other.Rate) && Mtu == other.Mtu && Vlan == other.Vlan
        && Bridge == other.Bridge && Vifname == other.Vifname;

    /// <summary><c>ip=</c>: space- or comma-separated addresses, each optionally <c>/prefix</c>. IPv6 entries are accepted and not enforced.</summary>
    public static bool TryParseIps(string? text, out uint[] ipv4)
    {
        ipv4 = [];
        if (string.IsNullOrWhiteSpace(text)) return true;
        var list = new List<uint>();
        foreach (var item in text.Split([' ', ','], StringSplitOptions.RemoveEmptyEntries))
        {
            var address = item.Split('/')[0];
            if (!IPAddress.TryParse(address, out var ip)) return false;
            if (ip.AddressFamily == AddressFamily.InterNetwork)
                list.Add(BinaryPrimitives.ReadUInt32BigEndian(ip.GetAddressBytes()));
        }
        ipv4 = [.. list];
        return true;
    }

    /// <summary>Reads the keys of a backend directory; <paramref name="errors"/> gets one line per bad key.</summary>
    public static VifSettings Parse(Func<string, string?> key, List<string> errors)
    {
        ulong mac = 0;
        if (key("mac") is { } m && !MacAddress.TryParse(m, out mac)) errors.Add($"mac '{m}' is not a MAC address");
        uint[] ips = [];
        if (key("ip") is { } i && !TryParseIps(i, out ips)) errors.Add($"ip '{i}' is not a list of addresses; not enforced");
        VifRateLimit? rate = null;
        if (key("rate") is { } r && !VifRateLimit.TryParse(r, out rate)) errors.Add($"rate '{r}' is not bytes,usecs; no limit");
        var mtu = 1500;
        if (key("mtu") is { } t && (!int.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out mtu) || mtu is < 68 or > 65535))
        {
            errors.Add($"mtu '{t}' is not 68..65535; using 1500");
            mtu = 1500;
        }
        ushort? vlan = null;
        if (key("vlan") is { } v)
        {
            if (ushort.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out var tag) && tag is >= 1 and <= 4094) vlan = tag;
            else errors.Add($"vlan '{v}' is not 1..4094; untagged");
        }
        var bridge = key("bridge") is { Length: > 0 } b ? b : "xenbr0";
        var vifname = key("vifname") is { Length: > 0 and <= 15 } n ? n : null;
        return new VifSettings { Mac = mac, Ipv4 = ips, Rate = rate, Mtu = mtu, Vlan = vlan, Bridge = bridge, Vifname = vifname };
    }
}

/// <summary>
/// The <c>rate</c> key as libxl writes it and Linux netback reads it (<c>xen_net_read_rate</c>):
/// <c>bytes,usecs</c>, a credit of <see cref="BytesPerInterval"/> bytes every <see cref="IntervalUsecs"/>.
/// </summary>
public sealed record VifRateLimit(ulong BytesPerInterval, uint IntervalUsecs)
{
    public static bool TryParse(string text, out VifRateLimit? rate)
    {
        rate = null;
        var parts = text.Split(',');
        if (parts.Length != 2
            || !ulong.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var bytes)
            || !uint.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var usecs)
            || bytes == 0 || usecs == 0 || usecs > 10_000_000)
            return false;
        rate = new VifRateLimit(bytes, usecs);
        return true;
    }
}
