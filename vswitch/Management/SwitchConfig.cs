using XenIo.VSwitch.Core;

namespace XenIo.VSwitch.Management;

/// <summary>The whole switch configuration: what <c>/xenio/switch</c> in xenstore says.</summary>
public sealed record SwitchConfig(IReadOnlyDictionary<string, BridgeConfig> Bridges)
{
    public static readonly SwitchConfig Empty = new(new SortedDictionary<string, BridgeConfig>(StringComparer.Ordinal));

    /// <summary>What netback starts with when nothing is configured: one bridge, as Xen's xenbr0.</summary>
    public static SwitchConfig Default => new(new SortedDictionary<string, BridgeConfig>(StringComparer.Ordinal) { ["xenbr0"] = new BridgeConfig("xenbr0") });
}

/// <summary>One bridge: its settings, ports, mirrors and static FDB entries.</summary>
public sealed record BridgeConfig(string Name)
{
    public const int DefaultMtu = 1500;
    public const int DefaultFdbAgingSeconds = 300;
    public const int DefaultFdbLimit = 8192;

    public int Mtu { get; init; } = DefaultMtu;
    public int FdbAgingSeconds { get; init; } = DefaultFdbAgingSeconds;
    public int FdbLimit { get; init; } = DefaultFdbLimit;
    public IReadOnlyDictionary<string, PortConfig> Ports { get; init; } = new SortedDictionary<string, PortConfig>(StringComparer.Ordinal);
    public IReadOnlyDictionary<string, MirrorConfig> Mirrors { get; init; } = new SortedDictionary<string, MirrorConfig>(StringComparer.Ordinal);
    /// <summary>Static FDB entries, at most one per (VLAN, MAC); order carries no meaning.</summary>
    public IReadOnlyList<StaticFdbEntry> StaticFdb { get; init; } = [];

    public bool Equals(BridgeConfig? other) =>
        other is not null && Name == other.Name && Mtu == other.Mtu && FdbAgingSeconds == other.FdbAgingSeconds && FdbLimit == other.FdbLimit
        && SameEntries(Ports, other.Ports) && SameEntries(Mirrors, other.Mirrors)
        && StaticFdb.Count == other.StaticFdb.Count && StaticFdb.ToHashSet().SetEquals(other.StaticFdb);

    public override int GetHashCode() => HashCode.Combine(Name, Mtu, FdbAgingSeconds, FdbLimit, Ports.Count, Mirrors.Count, StaticFdb.Count);

    internal static bool SameEntries<T>(IReadOnlyDictionary<string, T> a, IReadOnlyDictionary<string, T> b) =>
        a.Count == b.Count && a.All(kv => b.TryGetValue(kv.Key, out var v) && EqualityComparer<T>.Default.Equals(kv.Value, v));
}

/// <summary>
/// A static FDB entry (Open vSwitch's <c>fdb/add</c>, <c>bridge fdb add … static</c>): frames to
/// <paramref name="Mac"/> on <paramref name="Vlan"/> go to the port named <paramref name="Port"/>, which
/// may be a configured port or a vif netback attaches; the entry never ages and learning never moves it.
/// <paramref name="Vlan"/> is the VLAN the bridge puts the frames on: an access port's tag, 0 for untagged
/// frames on a trunk.
/// </summary>
public readonly record struct StaticFdbEntry(ulong Mac, int Vlan, string Port);

/// <summary>
/// A token-bucket limit per second with a one-time burst (Firecracker's semantics); 0 = none. A burst is
/// extra tokens of its own bucket (bytes or packets), so it needs that bucket's rate.
/// </summary>
public readonly record struct RateConfig(long BytesPerSecond, long PacketsPerSecond, long BytesBurst, long PacketsBurst)
{
    public bool IsNone => BytesPerSecond == 0 && PacketsPerSecond == 0 && BytesBurst == 0 && PacketsBurst == 0;

    /// <summary>The live limiter, null when there is none; throws <see cref="ArgumentException"/> for a burst without its rate.</summary>
    public RateLimiter? Build()
    {
        if (BytesBurst != 0 && BytesPerSecond == 0) throw new ArgumentException($"bytes-burst {BytesBurst} without bytes-per-sec; valid: a burst with its rate");
        if (PacketsBurst != 0 && PacketsPerSecond == 0) throw new ArgumentException($"packets-burst {PacketsBurst} without packets-per-sec; valid: a burst with its rate");
        return IsNone
            ? null
            : new RateLimiter(
                BytesPerSecond > 0 ? new TokenBucket(BytesPerSecond, BytesBurst, TimeSpan.FromSeconds(1)) : null,
                PacketsPerSecond > 0 ? new TokenBucket(PacketsPerSecond, PacketsBurst, TimeSpan.FromSeconds(1)) : null);
    }
}

/// <summary>One port: its kind and kind-specific options (which identify the port's peer; a change re-creates it) and its in-place settings.</summary>
public sealed record PortConfig(string Name, string Kind)
{
    public IReadOnlyDictionary<string, string> Options { get; init; } = new SortedDictionary<string, string>(StringComparer.Ordinal);
    public VlanMode VlanMode { get; init; } = VlanMode.Trunk;
    public ushort Tag { get; init; }
    /// <summary>Allowed VLANs of a trunk or native port, in <see cref="VlanSet.Parse"/> syntax; null = all.</summary>
    public string? Trunks { get; init; }
    public bool AdminUp { get; init; } = true;
    /// <summary>Port MTU; null = the bridge's.</summary>
    public int? Mtu { get; init; }
    public RateConfig Ingress { get; init; }
    public RateConfig Egress { get; init; }

    /// <summary>Same kind and options: the live port can stay and be updated in place.</summary>
    public bool SameIdentity(PortConfig other) => Kind == other.Kind && BridgeConfig.SameEntries(Options, other.Options);

    public PortVlan BuildVlan()
    {
        var trunks = Trunks is null ? VlanSet.All : VlanSet.Parse(Trunks);
        return VlanMode switch
        {
            VlanMode.Access => PortVlan.Access(Tag),
            VlanMode.NativeTagged => PortVlan.NativeTagged(Tag, trunks),
            VlanMode.NativeUntagged => PortVlan.NativeUntagged(Tag, trunks),
            _ => PortVlan.Trunk(trunks),
        };
    }

    public bool Equals(PortConfig? other) =>
        other is not null && Name == other.Name && SameIdentity(other) && VlanMode == other.VlanMode && Tag == other.Tag
        && Trunks == other.Trunks && AdminUp == other.AdminUp && Mtu == other.Mtu && Ingress == other.Ingress && Egress == other.Egress;

    public override int GetHashCode() => HashCode.Combine(Name, Kind, VlanMode, Tag, AdminUp, Mtu);
}

/// <summary>A persistent SPAN mirror of a bridge into a capture file.</summary>
public sealed record MirrorConfig(string Name, string File)
{
    /// <summary>Mirrored ports; empty = all.</summary>
    public IReadOnlyList<string> Ports { get; init; } = [];
    public CaptureDirection Directions { get; init; } = CaptureDirection.Ingress | CaptureDirection.Egress;
    public string? Vlans { get; init; }
    public string? Filter { get; init; }
    public int Snaplen { get; init; } = Capture.PcapWriter.DefaultSnaplen;
    public bool PcapNg { get; init; }

    public bool Equals(MirrorConfig? other) =>
        other is not null && Name == other.Name && File == other.File && Ports.SequenceEqual(other.Ports) && Directions == other.Directions
        && Vlans == other.Vlans && Filter == other.Filter && Snaplen == other.Snaplen && PcapNg == other.PcapNg;

    public override int GetHashCode() => HashCode.Combine(Name, File, Directions, Filter, Snaplen, PcapNg);
}
