namespace XenIo.Hypervisor.Store;

// The tree as a request sees it: the main tree, or a transaction's overlay of it.
public sealed partial class Xenstored
{
    private XenstoreNode? MainGet(ReadOnlySpan<char> path) => _lookup.TryGetValue(path, out var node) ? node : null;

    /// <summary>Looks a node up as <paramref name="tx"/> sees it, recording the access in the transaction.</summary>
    private XenstoreNode? Get(XenstoreConnection conn, XenstoreTransaction? tx, ReadOnlySpan<char> path)
    {
        if (tx is null) return MainGet(path);
        var entries = tx.Entries.GetAlternateLookup<ReadOnlySpan<char>>();
        if (entries.TryGetValue(path, out var entry)) return entry.Node;
        if (!conn.IsPrivileged && tx.Entries.Count >= Quota.TransactionNodes) throw new TransactionQuotaException();
        var main = MainGet(path);
        tx.Entries[path.ToString()] = new XenstoreTransaction.Entry { Node = main, BaseGeneration = main?.Generation ?? 0 };
        return main;
    }

    /// <summary>Returns the node to change in place (the transaction's own copy inside one).</summary>
    private XenstoreNode Modify(XenstoreTransaction? tx, ReadOnlySpan<char> path, XenstoreNode node)
    {
        if (tx is null)
        {
            node.Generation = ++_generation;
            NoteChange(path);
            return node;
        }
        var entry = tx.Entries.GetAlternateLookup<ReadOnlySpan<char>>()[path];
        if (!entry.Dirty)
        {
            entry.Node = node.Clone();
            entry.Dirty = true;
        }
        return entry.Node!;
    }

    private void Add(XenstoreTransaction? tx, string path, XenstoreNode node)
    {
        if (tx is null)
        {
            node.Generation = ++_generation;
            _nodes[path] = node;
            AdjustCount(node.Owner, +1);
            NoteChange(path);
            return;
        }
        if (!tx.Entries.TryGetValue(path, out var entry))
            tx.Entries[path] = entry = new XenstoreTransaction.Entry { BaseGeneration = MainGet(path)?.Generation ?? 0 };
        entry.Node = node;
        entry.Dirty = true;
        tx.AddDelta(node.Owner, +1);
        tx.NodeCreated = true;
    }

    private void Remove(XenstoreTransaction? tx, string path, XenstoreNode node)
    {
        if (tx is null)
        {
            _nodes.Remove(path);
            AdjustCount(node.Owner, -1);
            NoteChange(path);
            return;
        }
        var entry = tx.Entries[path];
        entry.Node = null;
        entry.Dirty = true;
        tx.AddDelta(node.Owner, -1);
    }

    private void NoteChange(ReadOnlySpan<char> path)
    {
        if (XenstorePath.IsAtOrBelow(path, XenioRoot)) _xenioDirty = true;
    }

    private int CountFor(XenstoreTransaction? tx, ushort domId) => NodeCount(domId) + (tx?.DeltaFor(domId) ?? 0);

    /// <summary>What <paramref name="conn"/> may do on <paramref name="node"/>.</summary>
    private static XenstoreAccess AccessFor(XenstoreConnection conn, XenstoreNode node) =>
        XenstorePermission.For(conn.DomId, conn.IsPrivileged, node.Perms);

    /// <summary>
    /// Finds a node the connection needs <paramref name="perm"/> on (xenstored's get_node). When the node is
    /// missing or refused, the error depends on what the nearest existing ancestor lets the connection do,
    /// so a refused guest cannot learn whether a node exists (errno_from_parents).
    /// </summary>
    private XsError GetNode(XenstoreConnection conn, XenstoreTransaction? tx, ReadOnlySpan<char> path,
        XenstoreAccess perm, out XenstoreNode? node)
    {
        node = Get(conn, tx, path);
        XsError error;
        if (node is null) error = XsError.ENOENT;
        else if ((AccessFor(conn, node) & perm) != perm) error = XsError.EACCES;
        else return XsError.None;
        var found = node;
        node = null;
        var p = path;
        do
        {
            p = XenstorePath.Parent(p);
            found = Get(conn, tx, p);
        } while (found is null && p.Length > 1);
        if (found is null) return XsError.EACCES;
        return (AccessFor(conn, found) & perm) != 0 ? error : XsError.EACCES;
    }

    /// <summary>
    /// Creates <paramref name="path"/> and any missing ancestors (xenstored's construct_node): each new node
    /// takes its parent's permissions, and a guest owns what it creates.
    /// </summary>
    private XsError Create(XenstoreConnection conn, XenstoreTransaction? tx, ReadOnlySpan<char> path, byte[] value, out string created)
    {
        created = path.ToString();
        var missing = new List<string> { created };
        XenstoreNode? parent;
        var p = created;
        while (true)
        {
            var parentPath = XenstorePath.Parent(p).ToString();
            parent = Get(conn, tx, parentPath);
            if (parent is not null) { p = parentPath; break; }
            if (parentPath == "/") return XsError.EIO;
            missing.Add(parentPath);
            p = parentPath;
        }
        var perms = parent.Perms;
        if (!conn.IsPrivileged)
        {
            perms = (XenstorePermission[])perms.Clone();
            perms[0] = perms[0] with { DomId = conn.DomId };
            if (CountFor(tx, conn.DomId) + missing.Count > Quota.Nodes) return XsError.ENOSPC;
            var size = XenstoreNode.HeaderBytes + XenstoreNode.PermissionBytes * perms.Length;
            if (size + value.Length > Quota.NodeSize) return XsError.ENOSPC;
            var firstChild = XenstorePath.BaseName(missing[^1]).Length + 1;
            if (parent.AccountedSize + firstChild > Quota.NodeSize) return XsError.ENOSPC;
            for (var i = missing.Count - 1; i > 0; i--)
                if (size + XenstorePath.BaseName(missing[i - 1]).Length + 1 > Quota.NodeSize) return XsError.ENOSPC;
        }
        for (var i = missing.Count - 1; i >= 0; i--)
        {
            parent = Modify(tx, p, parent);
            parent.AddChild(XenstorePath.BaseName(missing[i]).ToString());
            var node = new XenstoreNode(perms) { Value = i == 0 ? value : [] };
            Add(tx, missing[i], node);
            p = missing[i];
            parent = node;
        }
        return XsError.None;
    }

    /// <summary>Removes <paramref name="path"/> and everything below it, firing watches as xenstored's rm does.</summary>
    private void RemoveSubtree(XenstoreConnection conn, XenstoreTransaction? tx, string path, XenstoreNode node)
    {
        RemoveBelow(conn, tx, path, node, path);
        var parentPath = XenstorePath.Parent(path);
        var parent = Get(conn, tx, parentPath);
        if (parent is not null) Modify(tx, parentPath, parent).RemoveChild(XenstorePath.BaseName(path));
    }

    private void RemoveBelow(XenstoreConnection conn, XenstoreTransaction? tx, string path, XenstoreNode node, string root)
    {
        foreach (var child in node.Children.ToArray())
        {
            var childPath = XenstorePath.Child(path, child);
            var childNode = Get(conn, tx, childPath);
            if (childNode is not null) RemoveBelow(conn, tx, childPath, childNode, root);
        }
        // Fire while the node's permissions are still known: watches on this exact node, and for the
        // removed root, watches on it and above (watch.c, delnode_sub).
        Fire(tx, path, node, exact: !ReferenceEquals(path, root), oldPerms: null);
        Remove(tx, path, node);
    }

    private void Fire(XenstoreTransaction? tx, string path, XenstoreNode? node, bool exact, XenstorePermission[]? oldPerms)
    {
        if (tx is not null)
        {
            tx.Watches.Add(new XenstoreTransaction.QueuedWatch(path, exact, oldPerms ?? node?.Perms));
            return;
        }
        FireWatches(path, node, exact, oldPerms);
    }

    /// <summary>Ends a transaction with commit: EAGAIN if anything it saw changed since, else applies it.</summary>
    private XsError Commit(XenstoreConnection conn, XenstoreTransaction tx)
    {
        if (tx.Failed) return XsError.ENOSPC;
        foreach (var (path, entry) in tx.Entries)
        {
            var main = MainGet(path);
            if ((main?.Generation ?? 0) != entry.BaseGeneration) return XsError.EAGAIN;
        }
        if (tx.NodeCreated && !conn.IsPrivileged && NodeCount(conn.DomId) + tx.DeltaFor(conn.DomId) > Quota.Nodes)
            return XsError.ENOSPC;
        foreach (var (path, entry) in tx.Entries)
        {
            if (!entry.Dirty) continue;
            if (_nodes.TryGetValue(path, out var existing))
            {
                _nodes.Remove(path);
                AdjustCount(existing.Owner, -1);
            }
            if (entry.Node is { } node)
            {
                node.Generation = ++_generation;
                _nodes[path] = node;
                AdjustCount(node.Owner, +1);
            }
            NoteChange(path);
        }
        foreach (var w in tx.Watches)
            FireWatches(w.Path, MainGet(w.Path), w.Exact, w.OldPerms);
        return XsError.None;
    }
}
