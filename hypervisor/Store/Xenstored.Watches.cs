using Microsoft.Extensions.Logging;
using XenIo.Hypervisor.Abi;

namespace XenIo.Hypervisor.Store;

// Watches: matching, permission to see an event, queueing within the XSA-349 bounds.
public sealed partial class Xenstored
{
    // @introduceDomain and @releaseDomain are dom0's: only privileged connections (or ones it grants) see them.
    private readonly Dictionary<string, XenstorePermission[]> _specialPerms = new(StringComparer.Ordinal)
    {
        [XenstorePath.IntroduceDomain] = s_dom0Only,
        [XenstorePath.ReleaseDomain] = s_dom0Only,
    };

    /// <summary>
    /// Queues events for every watch at or above <paramref name="path"/> (or exactly on it), for every
    /// connection allowed to read the node or its parent, or allowed by the node's old permissions (watch.c).
    /// </summary>
    private void FireWatches(string path, XenstoreNode? node, bool exact, XenstorePermission[]? oldPerms)
    {
        foreach (var conn in _connections)
        {
            if (conn.Watches.Count == 0 || !WatchPermitted(conn, path, node, oldPerms)) continue;
            foreach (var watch in conn.Watches)
            {
                var send = exact ? path == watch.Path : XenstorePath.IsAtOrBelow(path, watch.Path);
                if (send) QueueEvent(conn, watch, path.AsSpan(Math.Min(watch.PrefixLength, path.Length)));
            }
        }
    }

    private void FireSpecial(string special)
    {
        var perms = _specialPerms[special];
        foreach (var conn in _connections)
        {
            if ((XenstorePermission.For(conn.DomId, conn.IsPrivileged, perms) & XenstoreAccess.Read) == 0) continue;
            foreach (var watch in conn.Watches)
                if (watch.Path == special) QueueEvent(conn, watch, special);
        }
    }

    private bool WatchPermitted(XenstoreConnection conn, string path, XenstoreNode? node, XenstorePermission[]? oldPerms)
    {
        if (conn.IsPrivileged) return true;
        if (oldPerms is not null && (XenstorePermission.For(conn.DomId, false, oldPerms) & XenstoreAccess.Read) != 0) return true;
        node ??= MainGet(path);
        if (node is null) return false;
        if ((AccessFor(conn, node) & XenstoreAccess.Read) != 0) return true;
        var parent = MainGet(XenstorePath.Parent(path));
        return parent is not null && (AccessFor(conn, parent) & XenstoreAccess.Read) != 0;
    }

    /// <summary>Builds "path\0token\0" as an XS_WATCH_EVENT and queues it within the connection's bounds.</summary>
    private void QueueEvent(XenstoreConnection conn, XenstoreWatch watch, ReadOnlySpan<char> path)
    {
        var length = path.Length + 1 + watch.Token.Length + 1;
        if (length > XenstoreLimits.PayloadMax) return; // xenstored does not send over-long events
        var buf = _event.AsSpan();
        XsdCodec.WriteHeader(buf, XsdSockmsgType.WatchEvent, 0, 0, (uint)length);
        var body = new PayloadBuilder(buf[XsdCodec.HeaderSize..]);
        body.Append(path);
        body.Append(0);
        body.Append(watch.Token.AsSpan()); // tokens are kept as Latin-1: one char per wire byte
        body.Append(0);
        if (!conn.Output.TryAppendEvent(watch, buf[..(XsdCodec.HeaderSize + length)]))
        {
            if (conn.Output.DroppedEvents == 1)
                _logger.LogWarning("xenstored: {Conn} is not taking its watch events; dropping beyond the bound", conn.Describe);
            return;
        }
        if (!ReferenceEquals(conn, _current)) conn.ScheduleFlush();
    }
}
