using XenIo.VSwitch.Core;

namespace XenIo.VSwitch.Ports;

/// <summary>One MAC a VXLAN port has learned behind one of its remotes, as <c>xenio switch fdb</c> shows it.</summary>
public readonly record struct VtepEntry(ulong Mac, VxlanRemote Remote, int Vni, TimeSpan Age);

/// <summary>
/// What a VXLAN port knows of where each MAC lives, as the Linux vxlan driver's FDB does: the inner
/// source MAC of a packet from a configured remote is learned behind that remote; a known unicast
/// frame then goes to that remote alone instead of to all of them. Entries age out (default 300 s),
/// move when a MAC shows up behind another remote (counted, and damped like the bridge's table), and
/// are bounded (default 4096): a remote sending from a million random MACs fills the table and
/// nothing more, and frames to MACs not learned are flooded to every remote as before. The table is
/// the bridge's own <see cref="ForwardingDatabase"/>, its "ports" being the remotes' indexes; the
/// receive loop learns while the bridge's thread looks up, so one lock serialises them.
/// </summary>
public sealed class VtepTable
{
    public const int DefaultLimit = 4096;
    private readonly ForwardingDatabase _table;
    private readonly Lock _gate = new();

    public VtepTable(int limit = DefaultLimit, TimeSpan? aging = null, TimeProvider? time = null)
    {
        _table = new ForwardingDatabase(limit, aging, time: time);
    }

    public int Count
    {
        get { lock (_gate) return _table.Count; }
    }

    public int Limit => _table.Limit;
    public long Learned => _table.Learned;
    public long Moves => _table.Moves;
    public long NotLearnedFull => _table.NotLearnedFull;

    /// <summary>Notes that <paramref name="mac"/> (a unicast source) arrived from remote <paramref name="remote"/>.</summary>
    public void Learn(ulong mac, int remote)
    {
        lock (_gate) _table.Learn(mac, 0, remote);
    }

    /// <summary>The remote <paramref name="mac"/> was learned behind, or -1 to flood.</summary>
    public int Lookup(ulong mac)
    {
        lock (_gate) return _table.Lookup(mac, 0);
    }

    public void Flush()
    {
        lock (_gate) _table.Flush();
    }

    /// <summary>The learned entries, each with its remote and VNI from <paramref name="options"/>.</summary>
    public IReadOnlyList<VtepEntry> Snapshot(VxlanPortOptions options)
    {
        List<FdbEntry> entries;
        lock (_gate) entries = _table.Snapshot();
        return [.. entries.Where(e => e.Port < options.Remotes.Count).Select(e =>
        {
            var remote = options.Remotes[e.Port];
            return new VtepEntry(e.Mac, remote, remote.Vni ?? options.Vni, e.Age);
        })];
    }
}
