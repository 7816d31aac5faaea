using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Store.Transports;

namespace XenIo.Hypervisor.Store;

/// <summary>
/// The xenstore daemon's state and request processing: the node tree, connections, watches,
/// transactions, introduced domains and quotas. Requests from every connection are processed one at a
/// time under one lock, as xenstored is single-threaded; transports run outside it.
/// </summary>
public sealed partial class Xenstored : IDisposable
{
    private readonly object _gate = new();
    private readonly ILogger _logger;
    private readonly Dictionary<string, XenstoreNode> _nodes = new(StringComparer.Ordinal);
    private readonly Dictionary<string, XenstoreNode>.AlternateLookup<ReadOnlySpan<char>> _lookup;
    private readonly Dictionary<ushort, int> _nodeCounts = [];
    private readonly List<XenstoreConnection> _connections = [];
    private readonly char[] _path = new char[XenstorePath.BufferChars];
    private readonly byte[] _event = new byte[XsdCodec.MaxMessage];
    private readonly byte[] _scratch = new byte[XsdCodec.MaxMessage];
    private ulong _generation;
    private XenstoreConnection? _current;
    private bool _xenioDirty;

    public Xenstored(XenstoreQuota? quota = null, IXenstoreDomainMapper? mapper = null, ILogger<Xenstored>? logger = null)
    {
        Quota = quota ?? new XenstoreQuota();
        Mapper = mapper;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _lookup = _nodes.GetAlternateLookup<ReadOnlySpan<char>>();
        CreateInitialTree();
    }

    public XenstoreQuota Quota { get; }

    /// <summary>Maps guests' rings for XS_INTRODUCE (hyperd's); without one, INTRODUCE answers ENOSYS.</summary>
    public IXenstoreDomainMapper? Mapper { get; set; }

    /// <summary>Called under the daemon's lock with the /xenio subtree after a request changed it.</summary>
    public Action<IReadOnlyList<XenioNodeRecord>>? XenioChanged { get; set; }

    internal ILogger Logger => _logger;

    public int ConnectionCount { get { lock (_gate) return _connections.Count; } }

    private static readonly XenstorePermission[] s_dom0Only = [new(0, XenstoreAccess.None)];

    private void CreateInitialTree()
    {
        // xenstored's setup_structure: the root is dom0's and nobody else's; so are /local/domain/0 and /xenio.
        foreach (var path in new[] { "/", "/local", "/local/domain", "/local/domain/0", "/tool", "/xenio" })
            CreateDirect(path, [], s_dom0Only);
    }

    /// <summary>Creates or replaces a node outside any request (initial tree, restoring /xenio).</summary>
    private void CreateDirect(string path, byte[] value, XenstorePermission[] perms)
    {
        if (_nodes.TryGetValue(path, out var existing))
        {
            existing.Value = value;
            AdjustCount(existing.Owner, -1);
            existing.Perms = perms;
            AdjustCount(existing.Owner, +1);
            existing.Generation = ++_generation;
            return;
        }
        if (path != "/")
        {
            var parent = XenstorePath.Parent(path).ToString();
            if (!_nodes.ContainsKey(parent)) CreateDirect(parent, [], _nodes.TryGetValue(XenstorePath.Parent(parent).ToString(), out var gp) ? gp.Perms : s_dom0Only);
            _nodes[parent].AddChild(XenstorePath.BaseName(path).ToString());
            _nodes[parent].Generation = ++_generation;
        }
        _nodes[path] = new XenstoreNode(perms) { Value = value, Generation = ++_generation };
        AdjustCount(perms[0].DomId, +1);
    }

    private void AdjustCount(ushort domId, int delta) =>
        _nodeCounts[domId] = (_nodeCounts.TryGetValue(domId, out var c) ? c : 0) + delta;

    internal int NodeCount(ushort domId) => _nodeCounts.TryGetValue(domId, out var c) ? c : 0;

    /// <summary>Serves a dom0 client (the Unix socket) until it goes. A socket client is always dom0.</summary>
    public Task ServeAsync(IXenstoreStream stream, CancellationToken cancellationToken)
    {
        var conn = Attach(stream, 0);
        return conn.RunAsync(cancellationToken);
    }

    private XenstoreConnection Attach(IXenstoreStream stream, ushort domId)
    {
        var conn = new XenstoreConnection(this, stream, domId, _logger);
        lock (_gate) _connections.Add(conn);
        return conn;
    }

    /// <summary>Drops a closed connection's watches and transactions.</summary>
    internal void Forget(XenstoreConnection conn)
    {
        lock (_gate)
        {
            _connections.Remove(conn);
            conn.Watches.Clear();
            conn.Transactions.Clear();
        }
    }

    /// <summary>Processes one request and queues its reply (and any watch events) on the connections.</summary>
    internal void Process(XenstoreConnection conn, in XsdSockmsg header, ReadOnlySpan<byte> payload)
    {
        lock (_gate)
        {
            if (conn.IsClosed) return;
            _current = conn;
            XenstoreWatch? initialEvent = null;
            var body = new PayloadBuilder(conn.ReplyBuffer.AsSpan(XsdCodec.HeaderSize, XenstoreLimits.PayloadMax));
            XsError error;
            try
            {
                error = Dispatch(conn, header, payload, ref body, ref initialEvent);
            }
            catch (TransactionQuotaException)
            {
                error = XsError.ENOSPC;
            }
            catch (Exception e)
            {
                // A bug, not the client's doing: answer, log once, and keep serving everybody else.
                _logger.LogError(e, "xenstored: {Conn}: {Type} failed", conn.Describe, header.Type);
                error = XsError.EIO;
            }
            if (error == XsError.None && body.Overflow) error = XsError.E2BIG;
            int length;
            XsdSockmsgType type;
            if (error == XsError.None)
            {
                length = body.Length;
                type = header.Type;
            }
            else
            {
                var text = XsErrorNames.Payload(error);
                text.CopyTo(conn.ReplyBuffer.AsSpan(XsdCodec.HeaderSize));
                length = text.Length;
                type = XsdSockmsgType.Error;
            }
            XsdCodec.WriteHeader(conn.ReplyBuffer, type, header.ReqId, header.TxId, (uint)length);
            conn.Output.AppendReply(conn.ReplyBuffer.AsSpan(0, XsdCodec.HeaderSize + length));
            // A new watch fires once, after its reply (xenstored's do_watch).
            if (initialEvent is not null) QueueEvent(conn, initialEvent, initialEvent.Path.AsSpan(initialEvent.PrefixLength));
            _current = null;
            if (_xenioDirty)
            {
                _xenioDirty = false;
                XenioChanged?.Invoke(SnapshotXenio());
            }
        }
    }

    private XsError Dispatch(XenstoreConnection conn, in XsdSockmsg header, ReadOnlySpan<byte> payload,
        ref PayloadBuilder body, ref XenstoreWatch? initialEvent)
    {
        var type = header.Type;
        if (type is XsdSockmsgType.Control or XsdSockmsgType.Introduce or XsdSockmsgType.Release
                or XsdSockmsgType.IsDomainIntroduced or XsdSockmsgType.Resume or XsdSockmsgType.SetTarget
            && !conn.IsPrivileged)
            return XsError.EACCES;

        XenstoreTransaction? tx = null;
        if (type is not (XsdSockmsgType.Watch or XsdSockmsgType.Unwatch) && header.TxId != 0)
        {
            if (!conn.Transactions.TryGetValue(header.TxId, out tx)) return XsError.ENOENT;
        }

        try
        {
            return Execute(conn, tx, type, payload, ref body, ref initialEvent);
        }
        catch (Exception) when (tx is not null)
        {
            // The overlay may be half-changed: it must never commit (xenstored's fail_transaction).
            tx.Failed = true;
            throw;
        }
    }

    private XsError Execute(XenstoreConnection conn, XenstoreTransaction? tx, XsdSockmsgType type, ReadOnlySpan<byte> payload,
        ref PayloadBuilder body, ref XenstoreWatch? initialEvent)
    {
        switch (type)
        {
            case XsdSockmsgType.Directory: return DoDirectory(conn, tx, payload, ref body);
            case XsdSockmsgType.DirectoryPart: return DoDirectoryPart(conn, tx, payload, ref body);
            case XsdSockmsgType.Read: return DoRead(conn, tx, payload, ref body);
            case XsdSockmsgType.Write: return DoWrite(conn, tx, payload, ref body);
            case XsdSockmsgType.Mkdir: return DoMkdir(conn, tx, payload, ref body);
            case XsdSockmsgType.Rm: return DoRm(conn, tx, payload, ref body);
            case XsdSockmsgType.GetPerms: return DoGetPerms(conn, tx, payload, ref body);
            case XsdSockmsgType.SetPerms: return DoSetPerms(conn, tx, payload, ref body);
            case XsdSockmsgType.Watch: return DoWatch(conn, payload, ref body, ref initialEvent);
            case XsdSockmsgType.Unwatch: return DoUnwatch(conn, payload, ref body);
            case XsdSockmsgType.TransactionStart: return DoTransactionStart(conn, tx, ref body);
            case XsdSockmsgType.TransactionEnd: return DoTransactionEnd(conn, tx, payload, ref body);
            case XsdSockmsgType.GetDomainPath: return DoGetDomainPath(payload, ref body);
            case XsdSockmsgType.Introduce: return DoIntroduce(payload, ref body);
            case XsdSockmsgType.Release: return DoRelease(payload, ref body);
            case XsdSockmsgType.IsDomainIntroduced: return DoIsDomainIntroduced(payload, ref body);
            case XsdSockmsgType.Resume: return DoResume(payload, ref body);
            case XsdSockmsgType.ResetWatches: return DoResetWatches(conn, ref body);
            case XsdSockmsgType.Control: return DoControl(payload, ref body);
            default: return XsError.ENOSYS;
        }
    }

    private static XsError Ok(ref PayloadBuilder body)
    {
        body.Append("OK\0"u8);
        return XsError.None;
    }

    /// <summary>Every node at or below /xenio, for persistence.</summary>
    private List<XenioNodeRecord> SnapshotXenio()
    {
        var list = new List<XenioNodeRecord>();
        void Walk(string path)
        {
            if (!_nodes.TryGetValue(path, out var node)) return;
            list.Add(XenioNodeRecord.From(path, node.Value, node.Perms));
            foreach (var child in node.Children) Walk(XenstorePath.Child(path, child));
        }
        Walk(XenioRoot);
        return list;
    }

    public const string XenioRoot = "/xenio";

    /// <summary>Restores the persisted /xenio subtree (at start, before any client connects).</summary>
    public void RestoreXenio(IEnumerable<XenioNodeRecord> records)
    {
        lock (_gate)
        {
            foreach (var r in records)
            {
                if (r?.Path is null || !XenstorePath.IsAtOrBelow(r.Path, XenioRoot)) continue;
                var raw = Encoding.ASCII.GetBytes(r.Path);
                if (XenstorePath.Canonicalize(raw, "/", true, false, _path, out var n, out _) != XsError.None || n != r.Path.Length) continue;
                if (!r.TryGetPerms(out var perms) || !r.TryGetValue(out var value)) continue;
                CreateDirect(r.Path, value, perms);
            }
        }
    }

    public void Dispose()
    {
        XenstoreConnection[] all;
        lock (_gate) all = [.. _connections];
        foreach (var c in all) c.Close();
        lock (_gate)
        {
            foreach (var d in _domains.Values) d.Ring.Dispose();
            _domains.Clear();
        }
    }

    private sealed class TransactionQuotaException : Exception;
}
