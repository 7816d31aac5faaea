namespace XenIo.VSwitch.Core;

/// <summary>How a port treats 802.1Q tags (Open vSwitch's <c>vlan_mode</c>).</summary>
public enum VlanMode
{
    /// <summary>One VLAN, untagged on the wire; tagged frames arriving are dropped.</summary>
    Access,
    /// <summary>Tagged VLANs from the allowed list; untagged frames belong to VLAN 0 (if allowed) and leave untagged.</summary>
    Trunk,
    /// <summary>A trunk whose native VLAN takes untagged frames in and leaves tagged.</summary>
    NativeTagged,
    /// <summary>A trunk whose native VLAN takes untagged frames in and leaves untagged.</summary>
    NativeUntagged,
}

/// <summary>How a frame of a given VLAN leaves a port.</summary>
public enum VlanEgress : byte
{
    NotMember = 0,
    Untagged = 1,
    Tagged = 2,
}

/// <summary>A set of VLAN ids 0..4095 as a bitmap; immutable once built so ports can share it.</summary>
public sealed class VlanSet
{
    private readonly ulong[] _bits = new ulong[64];

    public static readonly VlanSet All = Build(Enumerable.Range(0, 4095));

    public bool Contains(int vid) => (uint)vid < 4096 && (_bits[vid >> 6] & (1UL << (vid & 63))) != 0;

    public static VlanSet Build(IEnumerable<int> vids)
    {
        var set = new VlanSet();
        foreach (var v in vids)
        {
            if ((uint)v > 4094) throw new ArgumentOutOfRangeException(nameof(vids), v, "VLAN ids are 0..4094");
            set._bits[v >> 6] |= 1UL << (v & 63);
        }
        return set;
    }

    /// <summary>
    /// Parses "10,20-30"; "" or "all" means every VLAN. Each id is checked before a range is expanded (a
    /// range comes from xenstore or the command line), and anything else throws a <see cref="FormatException"/>
    /// naming the bad part and the valid ids.
    /// </summary>
    public static VlanSet Parse(string text)
    {
        if (string.IsNullOrWhiteSpace(text) || text.Trim() == "all") return All;
        var set = new VlanSet();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var dash = part.IndexOf('-');
            var from = ParseId(dash < 0 ? part : part[..dash], text);
            var to = dash < 0 ? from : ParseId(part[(dash + 1)..], text);
            if (from > to) throw new FormatException($"VLAN range '{part}' in '{text}' runs backwards; valid: {Syntax}");
            for (var v = from; v <= to; v++) set._bits[v >> 6] |= 1UL << (v & 63);
        }
        return set;
    }

    private const string Syntax = "ids 0-4094 as N or N-M, comma-separated (e.g. 10,20,100-199)";

    private static int ParseId(string id, string text) =>
        int.TryParse(id.Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var v) && v <= 4094
            ? v
            : throw new FormatException($"VLAN id '{id.Trim()}' in '{text}' is invalid; valid: {Syntax}");

    public override string ToString()
    {
        if (ReferenceEquals(this, All)) return "all";
        var parts = new List<string>();
        for (var v = 0; v < 4095; v++)
        {
            if (!Contains(v)) continue;
            var end = v;
            while (end + 1 < 4095 && Contains(end + 1)) end++;
            parts.Add(end == v ? $"{v}" : $"{v}-{end}");
            v = end;
        }
        return string.Join(',', parts);
    }
}

/// <summary>
/// A port's VLAN configuration. Internally every frame belongs to exactly one VLAN id 0..4094, where 0
/// is the untagged network of plain trunk ports (Open vSwitch's model), so nothing crosses between VLANs:
/// a frame only ever leaves through ports that are members of the VLAN it was classified into.
/// </summary>
public sealed record PortVlan(VlanMode Mode, ushort Tag, VlanSet Trunks)
{
    /// <summary>The default: a trunk of every VLAN whose untagged frames form VLAN 0.</summary>
    public static readonly PortVlan Default = new(VlanMode.Trunk, 0, VlanSet.All);

    public static PortVlan Access(ushort tag) => new(VlanMode.Access, Check(tag), VlanSet.All);
    public static PortVlan Trunk(VlanSet allowed) => new(VlanMode.Trunk, 0, allowed);
    public static PortVlan NativeTagged(ushort native, VlanSet allowed) => new(VlanMode.NativeTagged, Check(native), allowed);
    public static PortVlan NativeUntagged(ushort native, VlanSet allowed) => new(VlanMode.NativeUntagged, Check(native), allowed);

    /// <summary>The access or native VLAN of a port: 0 is the untagged network of plain trunks, 4095 reserved.</summary>
    public const ushort MinTag = 1, MaxTag = 4094;

    private static ushort Check(ushort tag) =>
        tag is >= MinTag and <= MaxTag ? tag : throw new ArgumentOutOfRangeException(nameof(tag), $"VLAN tag {tag} is invalid; valid: {MinTag}-{MaxTag}");

    /// <summary>
    /// The VLAN a frame arriving on this port belongs to, or -1 to drop it. <paramref name="vid"/> is
    /// the tag's VID when <paramref name="tagged"/>; a priority tag (VID 0) counts as untagged.
    /// </summary>
    public int ClassifyIngress(bool tagged, int vid)
    {
        if (tagged && vid == 0) tagged = false;
        if (tagged && vid >= 4095) return -1;
        switch (Mode)
        {
            case VlanMode.Access:
                return tagged ? -1 : Tag;
            case VlanMode.Trunk:
                if (!tagged) return Trunks.Contains(0) ? 0 : -1;
                return Trunks.Contains(vid) ? vid : -1;
            default:
                if (!tagged) return Tag;
                return vid == Tag || Trunks.Contains(vid) ? vid : -1;
        }
    }

    /// <summary>Whether and how a frame of <paramref name="vlan"/> leaves this port.</summary>
    /// <summary>The one VLAN this port sends untagged (<see cref="Egress"/> is Untagged for it alone), or -1 for none.</summary>
    public int UntaggedEgressVlan => Mode switch
    {
        VlanMode.Access or VlanMode.NativeUntagged => Tag,
        VlanMode.Trunk => Trunks.Contains(0) ? 0 : -1,
        _ => -1,
    };

    public VlanEgress Egress(int vlan)
    {
        switch (Mode)
        {
            case VlanMode.Access:
                return vlan == Tag ? VlanEgress.Untagged : VlanEgress.NotMember;
            case VlanMode.Trunk:
                if (!Trunks.Contains(vlan)) return VlanEgress.NotMember;
                return vlan == 0 ? VlanEgress.Untagged : VlanEgress.Tagged;
            case VlanMode.NativeTagged:
                if (vlan == 0) return VlanEgress.NotMember;
                return vlan == Tag || Trunks.Contains(vlan) ? VlanEgress.Tagged : VlanEgress.NotMember;
            default:
                if (vlan == 0) return VlanEgress.NotMember;
                if (vlan == Tag) return VlanEgress.Untagged;
                return Trunks.Contains(vlan) ? VlanEgress.Tagged : VlanEgress.NotMember;
        }
    }
}
