namespace XenIo.Hypervisor.Store;

/// <summary>
/// Per-domain limits for unprivileged domains, with xenstored's defaults (tools/xenstored/domain.c).
/// dom0 is not limited by these. Answered as Xen 4.17 does: ENOSPC for nodes, node size, transactions,
/// permissions and transaction nodes; E2BIG for watches; EINVAL for an over-long path.
/// </summary>
public sealed class XenstoreQuota
{
    /// <summary>Nodes a domain may own ("nodes").</summary>
    public int Nodes { get; set; } = 1000;

    /// <summary>Accounted size of one node: header, permissions, value and child names ("node-size").</summary>
    public int NodeSize { get; set; } = 2048;

    /// <summary>Watches per domain ("watches").</summary>
    public int Watches { get; set; } = 128;

    /// <summary>Open transactions per domain ("transactions").</summary>
    public int Transactions { get; set; } = 10;

    /// <summary>Nodes one transaction may touch ("transaction-nodes").</summary>
    public int TransactionNodes { get; set; } = 1024;

    /// <summary>Entries of one permission list ("node-permissions").</summary>
    public int NodePermissions { get; set; } = 5;

    /// <summary>Replies queued and not yet taken by a guest before its requests stop being read ("outstanding").</summary>
    public int Outstanding { get; set; } = 20;

    /// <summary>Replies queued for a dom0 connection before its requests stop being read.</summary>
    public int PrivilegedOutstanding { get; set; } = 1024;

    /// <summary>Watch events queued for one connection; further events are dropped (XSA-349).</summary>
    public int PendingEvents { get; set; } = 1024;

    /// <summary>Watch events queued for one watch; further events of that watch are dropped (XSA-349).</summary>
    public int PendingEventsPerWatch { get; set; } = 256;
}
