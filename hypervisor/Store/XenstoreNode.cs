namespace XenIo.Hypervisor.Store;

/// <summary>
/// One node of the tree: its value, its permission list (owner first), its children in creation order
/// and the generation of its last change (transactions compare generations to detect conflicts).
/// </summary>
internal sealed class XenstoreNode
{
    // xenstored accounts a node as its header (generation u64, num_perms u16, datalen u16, childlen u32),
    // 8 bytes per permission, its value and its child names; guests are limited to node-size of that.
    public const int HeaderBytes = 16;
    public const int PermissionBytes = 8;

    public byte[] Value = [];
    public XenstorePermission[] Perms;
    public List<string> Children = [];
    public int ChildLen;
    public ulong Generation;

    public XenstoreNode(XenstorePermission[] perms) => Perms = perms;

    public ushort Owner => Perms[0].DomId;

    public int AccountedSize => HeaderBytes + PermissionBytes * Perms.Length + Value.Length + ChildLen;

    public XenstoreNode Clone() => new(Perms)
    {
        Value = Value,
        Children = [.. Children],
        ChildLen = ChildLen,
        Generation = Generation,
    };

    public void AddChild(string name)
    {
        Children.Add(name);
        ChildLen += name.Length + 1;
    }

    public void RemoveChild(ReadOnlySpan<char> name)
    {
        for (var i = 0; i < Children.Count; i++)
        {
            if (!name.SequenceEqual(Children[i])) continue;
            ChildLen -= Children[i].Length + 1;
            Children.RemoveAt(i);
            return;
        }
    }
}

/// <summary>A watch one connection has set: the absolute path, the token, and how much of the path to hide.</summary>
internal sealed class XenstoreWatch(string path, string token, int prefixLength)
{
    public string Path { get; } = path;
    public string Token { get; } = token;

    /// <summary>Length of "/local/domain/&lt;id&gt;/" for a relative watch: events report relative paths.</summary>
    public int PrefixLength { get; } = prefixLength;

    // Pending events of this watch in the connection's current output batch (XSA-349 bound).
    public uint PendingEpoch;
    public int PendingEvents;
}
