using Microsoft.Extensions.Logging;
using System.Buffers;
using System.Globalization;
using System.Text;
using XenIo.Hypervisor.Abi;

namespace XenIo.Hypervisor.Store;

// One method per XS_* request, with xenstored's argument rules and answers (tools/xenstored/core.c).
public sealed partial class Xenstored
{
    private XsError Canonical(XenstoreConnection conn, ReadOnlySpan<byte> raw, bool allowSpecial, out ReadOnlySpan<char> path, out bool relative)
    {
        var error = XenstorePath.Canonicalize(raw, conn.DomainPath, conn.IsPrivileged, allowSpecial, _path, out var n, out relative);
        path = error == XsError.None ? _path.AsSpan(0, n) : default;
        return error;
    }

    private XsError OneArgPath(XenstoreConnection conn, ReadOnlySpan<byte> payload, bool allowSpecial, out ReadOnlySpan<char> path)
    {
        path = default;
        if (!XsdCodec.TryOneArg(payload, out var arg)) return XsError.EINVAL;
        return Canonical(conn, arg, allowSpecial, out path, out _);
    }

    private XsError DoRead(XenstoreConnection conn, XenstoreTransaction? tx, ReadOnlySpan<byte> payload, ref PayloadBuilder body)
    {
        var error = OneArgPath(conn, payload, false, out var path);
        if (error != XsError.None) return error;
        error = GetNode(conn, tx, path, XenstoreAccess.Read, out var node);
        if (error != XsError.None) return error;
        body.Append(node!.Value);
        return XsError.None;
    }

    private XsError DoDirectory(XenstoreConnection conn, XenstoreTransaction? tx, ReadOnlySpan<byte> payload, ref PayloadBuilder body)
    {
        var error = OneArgPath(conn, payload, false, out var path);
        if (error != XsError.None) return error;
        error = GetNode(conn, tx, path, XenstoreAccess.Read, out var node);
        if (error != XsError.None) return error;
        foreach (var child in node!.Children)
        {
            body.Append(child.AsSpan());
            body.Append(0);
        }
        return XsError.None;
    }

    /// <summary>
    /// "path\0offset\0": the node's generation, then as many child names from byte <c>offset</c> of the
    /// child list as fit; an extra NUL marks the end of the list (send_directory_part).
    /// </summary>
    private XsError DoDirectoryPart(XenstoreConnection conn, XenstoreTransaction? tx, ReadOnlySpan<byte> payload, ref PayloadBuilder body)
    {
        if (XsdCodec.CountStrings(payload) != 2) return XsError.EINVAL;
        var rest = payload;
        XsdCodec.TryNextString(ref rest, out var rawPath);
        XsdCodec.TryNextString(ref rest, out var rawOffset);
        var error = Canonical(conn, rawPath, false, out var path, out _);
        if (error != XsError.None) return error;
        error = GetNode(conn, tx, path, XenstoreAccess.Read, out var node);
        if (error != XsError.None) return error;
        var offset = AtoI(rawOffset);
        body.AppendDecimal(node!.Generation);
        body.Append(0);
        var genLength = body.Length;
        if (offset >= node.ChildLen)
        {
            body.Append(0);
            return XsError.None;
        }
        var children = ArrayPool<byte>.Shared.Rent(node.ChildLen);
        try
        {
            var used = 0;
            foreach (var child in node.Children)
            {
                Encoding.ASCII.GetBytes(child, children.AsSpan(used));
                used += child.Length;
                children[used++] = 0;
            }
            var maxLength = XenstoreLimits.PayloadMax - genLength - 1;
            var length = 0;
            var pos = offset;
            while (true)
            {
                var nameLength = children.AsSpan(pos, used - pos).IndexOf((byte)0);
                if (length + nameLength >= maxLength) break;
                length += nameLength + 1;
                pos += nameLength + 1;
                if (offset + length == used) break;
            }
            body.Append(children.AsSpan(offset, length));
            if (offset + length == used) body.Append(0);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(children);
        }
        return XsError.None;
    }

    private static int AtoI(ReadOnlySpan<byte> text)
    {
        long v = 0;
        foreach (var b in text)
        {
            if (b is < (byte)'0' or > (byte)'9') break;
            v = Math.Min(int.MaxValue, v * 10 + (b - '0'));
        }
        return (int)v;
    }

    private XsError DoWrite(XenstoreConnection conn, XenstoreTransaction? tx, ReadOnlySpan<byte> payload, ref PayloadBuilder body)
    {
        var nul = payload.IndexOf((byte)0);
        if (nul < 0) return XsError.EINVAL;
        var error = Canonical(conn, payload[..nul], false, out var path, out _);
        if (error != XsError.None) return error;
        var data = payload[(nul + 1)..];
        error = GetNode(conn, tx, path, XenstoreAccess.Write, out var node);
        string name;
        if (error == XsError.None)
        {
            if (!conn.IsPrivileged && node!.AccountedSize - node.Value.Length + data.Length > Quota.NodeSize) return XsError.ENOSPC;
            name = path.ToString();
            Modify(tx, path, node!).Value = data.ToArray();
        }
        else if (error == XsError.ENOENT)
        {
            error = Create(conn, tx, path, data.ToArray(), out name);
            if (error != XsError.None) return error;
        }
        else return error;
        Fire(tx, name, Get(conn, tx, name), exact: false, oldPerms: null);
        return Ok(ref body);
    }

    private XsError DoMkdir(XenstoreConnection conn, XenstoreTransaction? tx, ReadOnlySpan<byte> payload, ref PayloadBuilder body)
    {
        var error = OneArgPath(conn, payload, false, out var path);
        if (error != XsError.None) return error;
        error = GetNode(conn, tx, path, XenstoreAccess.Write, out _);
        if (error == XsError.ENOENT)
        {
            error = Create(conn, tx, path, [], out var name);
            if (error != XsError.None) return error;
            Fire(tx, name, Get(conn, tx, name), exact: false, oldPerms: null);
        }
        else if (error != XsError.None) return error;
        return Ok(ref body);
    }

    private XsError DoRm(XenstoreConnection conn, XenstoreTransaction? tx, ReadOnlySpan<byte> payload, ref PayloadBuilder body)
    {
        var error = OneArgPath(conn, payload, false, out var path);
        if (error != XsError.None) return error;
        error = GetNode(conn, tx, path, XenstoreAccess.Write, out var node);
        if (error == XsError.ENOENT)
        {
            // Already gone is fine if the parent exists (do_rm).
            return Get(conn, tx, XenstorePath.Parent(path)) is not null ? Ok(ref body) : XsError.ENOENT;
        }
        if (error != XsError.None) return error;
        if (path.Length == 1) return XsError.EINVAL;
        RemoveSubtree(conn, tx, path.ToString(), node!);
        return Ok(ref body);
    }

    private XsError DoGetPerms(XenstoreConnection conn, XenstoreTransaction? tx, ReadOnlySpan<byte> payload, ref PayloadBuilder body)
    {
        var error = OneArgPath(conn, payload, true, out var path);
        if (error != XsError.None) return error;
        XenstorePermission[] perms;
        if (path[0] == '@')
        {
            if (!_specialPerms.GetAlternateLookup<ReadOnlySpan<char>>().TryGetValue(path, out perms!)) return XsError.ENOENT;
            if ((XenstorePermission.For(conn.DomId, conn.IsPrivileged, perms) & XenstoreAccess.Read) == 0) return XsError.EACCES;
        }
        else
        {
            error = GetNode(conn, tx, path, XenstoreAccess.Read, out var node);
            if (error != XsError.None) return error;
            perms = node!.Perms;
        }
        Span<byte> text = stackalloc byte[8];
        foreach (var p in perms)
        {
            body.Append(text[..p.Format(text)]);
            body.Append(0);
        }
        return XsError.None;
    }

    private XsError DoSetPerms(XenstoreConnection conn, XenstoreTransaction? tx, ReadOnlySpan<byte> payload, ref PayloadBuilder body)
    {
        var count = XsdCodec.CountStrings(payload) - 1;
        if (count < 1) return XsError.EINVAL;
        if (!conn.IsPrivileged && count > Quota.NodePermissions) return XsError.ENOSPC;
        var rest = payload;
        XsdCodec.TryNextString(ref rest, out var rawPath);
        var perms = new XenstorePermission[count];
        for (var i = 0; i < count; i++)
        {
            XsdCodec.TryNextString(ref rest, out var text);
            if (!XenstorePermission.TryParse(text, out perms[i])) return XsError.EINVAL;
        }
        var error = Canonical(conn, rawPath, true, out var path, out _);
        if (error != XsError.None) return error;
        if (path[0] == '@')
        {
            var specials = _specialPerms.GetAlternateLookup<ReadOnlySpan<char>>();
            if (!specials.TryGetValue(path, out var old)) return XsError.ENOENT;
            if ((XenstorePermission.For(conn.DomId, conn.IsPrivileged, old) & XenstoreAccess.Owner) == 0) return XsError.EACCES;
            specials[path] = perms;
            return Ok(ref body);
        }
        error = GetNode(conn, tx, path, XenstoreAccess.Write | XenstoreAccess.Owner, out var node);
        if (error != XsError.None) return error;
        // Guests may not give their nodes away.
        if (!conn.IsPrivileged && perms[0].DomId != node!.Owner) return XsError.EPERM;
        if (!conn.IsPrivileged && node!.AccountedSize + XenstoreNode.PermissionBytes * (count - node.Perms.Length) > Quota.NodeSize)
            return XsError.ENOSPC;
        var oldPerms = node!.Perms;
        var name = path.ToString();
        var changed = Modify(tx, path, node);
        if (tx is null)
        {
            AdjustCount(oldPerms[0].DomId, -1);
            AdjustCount(perms[0].DomId, +1);
        }
        else
        {
            tx.AddDelta(oldPerms[0].DomId, -1);
            tx.AddDelta(perms[0].DomId, +1);
        }
        changed.Perms = perms;
        Fire(tx, name, changed, exact: false, oldPerms: oldPerms);
        return Ok(ref body);
    }

    private XsError DoWatch(XenstoreConnection conn, ReadOnlySpan<byte> payload, ref PayloadBuilder body, ref XenstoreWatch? initialEvent)
    {
        if (XsdCodec.CountStrings(payload) != 2) return XsError.EINVAL;
        var rest = payload;
        XsdCodec.TryNextString(ref rest, out var rawPath);
        XsdCodec.TryNextString(ref rest, out var rawToken);
        var error = Canonical(conn, rawPath, true, out var path, out var relative);
        if (error != XsError.None) return error;
        var token = Encoding.Latin1.GetString(rawToken);
        foreach (var w in conn.Watches)
            if (path.SequenceEqual(w.Path) && w.Token == token) return XsError.EEXIST;
        if (!conn.IsPrivileged && conn.Watches.Count >= Quota.Watches) return XsError.E2BIG;
        var watch = new XenstoreWatch(path.ToString(), token, relative ? conn.DomainPath.Length + 1 : 0);
        conn.Watches.Add(watch);
        initialEvent = watch;
        return Ok(ref body);
    }

    private XsError DoUnwatch(XenstoreConnection conn, ReadOnlySpan<byte> payload, ref PayloadBuilder body)
    {
        if (XsdCodec.CountStrings(payload) != 2) return XsError.EINVAL;
        var rest = payload;
        XsdCodec.TryNextString(ref rest, out var rawPath);
        XsdCodec.TryNextString(ref rest, out var rawToken);
        var error = Canonical(conn, rawPath, true, out var path, out _);
        if (error != XsError.None) return error;
        var token = Encoding.Latin1.GetString(rawToken);
        for (var i = 0; i < conn.Watches.Count; i++)
        {
            if (!path.SequenceEqual(conn.Watches[i].Path) || conn.Watches[i].Token != token) continue;
            conn.Watches.RemoveAt(i);
            return Ok(ref body);
        }
        return XsError.ENOENT;
    }

    private XsError DoTransactionStart(XenstoreConnection conn, XenstoreTransaction? tx, ref PayloadBuilder body)
    {
        if (tx is not null) return XsError.EBUSY; // no nested transactions
        if (!conn.IsPrivileged && conn.Transactions.Count >= Quota.Transactions) return XsError.ENOSPC;
        uint id;
        do
        {
            id = conn.NextTransactionId++;
        } while (id == 0 || conn.Transactions.ContainsKey(id));
        conn.Transactions[id] = new XenstoreTransaction(id);
        body.AppendDecimal(id);
        body.Append(0);
        return XsError.None;
    }

    private XsError DoTransactionEnd(XenstoreConnection conn, XenstoreTransaction? tx, ReadOnlySpan<byte> payload, ref PayloadBuilder body)
    {
        if (!XsdCodec.TryOneArg(payload, out var arg) || !(arg.SequenceEqual("T"u8) || arg.SequenceEqual("F"u8)))
            return XsError.EINVAL;
        if (tx is null) return XsError.ENOENT;
        conn.Transactions.Remove(tx.Id);
        if (arg[0] == (byte)'T')
        {
            var error = Commit(conn, tx);
            if (error != XsError.None) return error;
        }
        return Ok(ref body);
    }

    private static XsError DoGetDomainPath(ReadOnlySpan<byte> payload, ref PayloadBuilder body)
    {
        if (!XsdCodec.TryOneArg(payload, out var arg) || !XsdCodec.TryParseDomId(arg, out var domId)) return XsError.EINVAL;
        body.Append("/local/domain/"u8);
        body.AppendDecimal(domId);
        body.Append(0);
        return XsError.None;
    }

    private XsError DoResetWatches(XenstoreConnection conn, ref PayloadBuilder body)
    {
        conn.Watches.Clear();
        conn.Transactions.Clear();
        return Ok(ref body);
    }

    /// <summary>A small XS_CONTROL: "print &lt;text&gt;" logs, "quota" lists the limits, "help" lists commands.</summary>
    private XsError DoControl(ReadOnlySpan<byte> payload, ref PayloadBuilder body)
    {
        var argc = XsdCodec.CountStrings(payload);
        if (argc == 0) return XsError.EINVAL;
        var rest = payload;
        XsdCodec.TryNextString(ref rest, out var command);
        if (command.SequenceEqual("print"u8))
        {
            if (argc != 2) return XsError.EINVAL;
            XsdCodec.TryNextString(ref rest, out var text);
            _logger.LogInformation("control: {Text}", Encoding.Latin1.GetString(text));
            return Ok(ref body);
        }
        string reply;
        if (command.SequenceEqual("quota"u8))
        {
            if (argc != 1) return XsError.EINVAL;
            var sb = new StringBuilder("Quota settings:\n");
            void Line(string name, int value, string what) =>
                sb.Append(CultureInfo.InvariantCulture, $"{name,-17}: {value,8} {what}\n");
            Line("nodes", Quota.Nodes, "Nodes per domain");
            Line("watches", Quota.Watches, "Watches per domain");
            Line("outstanding", Quota.Outstanding, "Outstanding requests per domain");
            Line("transactions", Quota.Transactions, "Active transactions per domain");
            Line("transaction-nodes", Quota.TransactionNodes, "Max. number of accessed nodes per transaction");
            Line("node-permissions", Quota.NodePermissions, "Max. number of permissions per node");
            Line("path-max", XenstoreLimits.RelPathMax, "Max. length of a node path");
            Line("node-size", Quota.NodeSize, "Max. size of a node");
            reply = sb.ToString();
        }
        else if (command.SequenceEqual("help"u8))
        {
            if (argc != 1) return XsError.EINVAL;
            reply = "print           <string>\nquota           \nhelp            \n";
        }
        else return XsError.EINVAL;
        body.Append(reply.AsSpan());
        body.Append(0);
        return XsError.None;
    }
}
