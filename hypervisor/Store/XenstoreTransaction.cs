namespace XenIo.Hypervisor.Store;

/// <summary>
/// An open transaction: an overlay of the nodes it has read or changed. Each entry remembers the
/// generation the node had in the tree when the transaction first saw it (0: absent); at commit any
/// difference means another change came first and the end is answered EAGAIN, as xenstored does.
/// Watches are queued and fire at commit.
/// </summary>
internal sealed class XenstoreTransaction(uint id)
{
    internal sealed class Entry
    {
        public XenstoreNode? Node;     // null: absent (deleted in, or never existed before, this transaction)
        public ulong BaseGeneration;   // generation in the tree at first access; 0 if it did not exist
        public bool Dirty;             // Node is this transaction's own copy
    }

    internal readonly record struct QueuedWatch(string Path, bool Exact, XenstorePermission[]? OldPerms);

    public uint Id { get; } = id;
    public Dictionary<string, Entry> Entries { get; } = new(StringComparer.Ordinal);
    public List<QueuedWatch> Watches { get; } = [];

    /// <summary>Change of nodes owned per domain, for the nodes quota checked at commit.</summary>
    public Dictionary<ushort, int> NodeDelta { get; } = [];

    /// <summary>A node was created in this transaction (guests' node quota is re-checked at commit).</summary>
    public bool NodeCreated;

    /// <summary>A request inside it failed half-way (a quota): the transaction can only be ended without effect.</summary>
    public bool Failed;

    public int DeltaFor(ushort domId) => NodeDelta.TryGetValue(domId, out var d) ? d : 0;

    public void AddDelta(ushort domId, int delta) => NodeDelta[domId] = DeltaFor(domId) + delta;
}
