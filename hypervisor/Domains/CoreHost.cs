using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Win32.SafeHandles;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Events;
using XenIo.Hypervisor.Grants;
using XenIo.Hypervisor.Hypercalls;
using XenIo.Hypervisor.Interop;
using XenIo.Hypervisor.Memory;

namespace XenIo.Hypervisor.Domains;

/// <summary>
/// hyperd's core services, in-process: the page pool, the event channel table, the mapped-grant
/// ledger and the hypercall server (<c>&lt;run&gt;/hypercall.sock</c>). It creates a domain's memory,
/// grant table and hypercall connection and can hand a domain's descriptors to another process
/// (<see cref="DomainHandoff"/>) without starting an agent: what test harnesses and the domain
/// lifecycle build on.
/// </summary>
public sealed class CoreHost : IDomainRegistry, IDisposable
{
    private readonly object _gate = new();
    private readonly Dictionary<ushort, HostedDomain> _domains = [];
    private readonly ILogger _logger;

    public CoreHost(string runDirectory, long budgetPages, ILogger? logger = null)
    {
        _logger = logger ?? NullLogger.Instance;
        Directory.CreateDirectory(runDirectory);
        RunDirectory = runDirectory;
        Pool = new HostPagePool(budgetPages);
        Events = new EventChannelTable();
        Events.AddDomain(DomainIds.Dom0);
        Ledger = new MappedGrantLedger();
        Server = new HypercallServer(Events, Ledger, this, _logger);
        Server.Listen(HypercallSocketPath);
        Server.Start();
    }

    public string RunDirectory { get; }

    public string HypercallSocketPath => Path.Combine(RunDirectory, "hypercall.sock");

    public HostPagePool Pool { get; }

    public EventChannelTable Events { get; }

    public MappedGrantLedger Ledger { get; }

    public HypercallServer Server { get; }

    /// <summary>Raised on the hypercall thread when a guest asks to shut down.</summary>
    public event Action<ushort, ShutdownReason>? DomainShutdown;

    /// <summary>Raised on the hypercall thread when a guest's hypercall connection closes.</summary>
    public event Action<ushort>? GuestDisconnected;

    /// <summary>
    /// Creates a domain's memory (sealed memfd of <paramref name="frames"/> pages), charges it to the
    /// pool, sets up its event channel space and its hypercall connection. Null when the pool cannot
    /// hold it. The grant table is frames 0..<paramref name="grantFrames"/>-1.
    /// </summary>
    public HostedDomain? TryCreateDomain(ushort domid, string name, uint frames, uint grantFrames = GrantLimits.DefaultMaxGrantFrames)
    {
        if (domid == DomainIds.Dom0 || domid >= DomainIds.FirstReserved) throw new ArgumentOutOfRangeException(nameof(domid));
        if (grantFrames == 0 || grantFrames >= frames) throw new ArgumentOutOfRangeException(nameof(grantFrames), "the grant table must leave frames for the guest");
        lock (_gate)
        {
            if (_domains.ContainsKey(domid)) throw new InvalidOperationException($"domain {domid} exists");
        }
        var memory = DomainMemory.Create($"xenio-d{domid}", frames);
        var reservation = DomainReservation.TryCreate(memory, Pool, grantFrames);
        if (reservation is null)
        {
            memory.Dispose();
            _logger.LogWarning("domain {Domid}: {Frames} pages do not fit the page pool ({Free} free)", domid, frames, Pool.FreePages);
            return null;
        }
        if (!Libc.TrySocketPair(Libc.SOCK_SEQPACKET, out int hyperdEnd, out int guestEnd))
        {
            reservation.Dispose();
            memory.Dispose();
            throw DomainMemory.Failure("socketpair", Libc.Errno);
        }
        var domain = new HostedDomain(domid, name, memory, grantFrames, reservation, new SafeFileHandle(guestEnd, ownsHandle: true));
        lock (_gate) _domains.Add(domid, domain);
        Events.AddDomain(domid);
        Server.AddGuest(domid, new SafeFileHandle(hyperdEnd, ownsHandle: true));
        return domain;
    }

    public HostedDomain CreateDomain(ushort domid, string name, uint frames, uint grantFrames = GrantLimits.DefaultMaxGrantFrames) =>
        TryCreateDomain(domid, name, frames, grantFrames) ?? throw new InvalidOperationException($"domain {domid}: the page pool cannot hold {frames} pages");

    public HostedDomain? Find(ushort domid)
    {
        lock (_gate) return _domains.GetValueOrDefault(domid);
    }

    IHostedDomain? IDomainRegistry.Find(ushort domid) => Find(domid);

    /// <summary>
    /// Destroys a domain: closes its hypercall connection and event channels, unmaps its memory and
    /// gives its pages back to the pool. Done on the hypercall thread so no request in flight still
    /// uses the mapping; returns when it is done.
    /// </summary>
    public void DestroyDomain(ushort domid)
    {
        HostedDomain? domain;
        lock (_gate)
        {
            if (!_domains.Remove(domid, out domain)) return;
        }
        Server.Invoke(() =>
        {
            Server.DisconnectGuest(domid);
            Events.RemoveDomain(domid);
            domain.Dispose();
        });
    }

    void IDomainRegistry.OnShutdown(ushort domid, ShutdownReason reason)
    {
        if (Find(domid) is { } d) d.ShutdownReason = reason;
        _logger.LogInformation("domain {Domid}: shutdown ({Reason})", domid, reason);
        DomainShutdown?.Invoke(domid, reason);
    }

    void IDomainRegistry.OnGuestDisconnected(ushort domid)
    {
        if (Find(domid) is { } d) d.GuestConnected = false;
        GuestDisconnected?.Invoke(domid);
    }

    public void Dispose()
    {
        Server.Dispose();
        HostedDomain[] all;
        lock (_gate)
        {
            all = [.. _domains.Values];
            _domains.Clear();
        }
        foreach (var d in all) d.Dispose();
    }
}

/// <summary>A domain hyperd hosts: its memory (hyperd's mapping), reservation, grant table view and the guest's end of its hypercall connection.</summary>
public sealed class HostedDomain : IHostedDomain, IDisposable
{
    internal HostedDomain(ushort domid, string name, DomainMemory memory, uint grantFrames, DomainReservation reservation, SafeFileHandle guestEnd)
    {
        Domid = domid;
        Name = name;
        Memory = memory;
        GrantFrames = grantFrames;
        Reservation = reservation;
        GuestEnd = guestEnd;
        GrantTable = new GrantTable(memory, grantFrames);
    }

    public ushort Domid { get; }

    public string Name { get; }

    public DomainMemory Memory { get; }

    public uint GrantFrames { get; }

    public DomainReservation Reservation { get; }

    /// <summary>hyperd's view of the guest's grant table: the toolstack seeds refs 0 (console) and 1 (xenstore) with it.</summary>
    public GrantTable GrantTable { get; }

    /// <summary>The guest's end of its hypercall connection, until it is handed to the guest's process.</summary>
    public SafeFileHandle? GuestEnd { get; private set; }

    public bool GuestConnected { get; internal set; } = true;

    public ShutdownReason? ShutdownReason { get; internal set; }

    /// <summary>Gives up hyperd's copy of the guest end once it has been passed on (so the guest's death is seen as end of file).</summary>
    public SafeFileHandle TakeGuestEnd()
    {
        var end = GuestEnd ?? throw new InvalidOperationException("the guest end has been handed over already");
        GuestEnd = null;
        return end;
    }

    public void Dispose()
    {
        GuestEnd?.Dispose();
        GuestEnd = null;
        Reservation.Dispose();
        Memory.Dispose();
    }
}
