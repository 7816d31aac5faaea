using XenIo.Hypervisor.Memory;

namespace XenIo.Hypervisor.Hypercalls;

/// <summary>What the hypercall server needs to know about a domain hyperd hosts.</summary>
public interface IHostedDomain
{
    ushort Domid { get; }

    /// <summary>hyperd's own mapping of the domain's memory (its descriptor is what map_foreign sends).</summary>
    DomainMemory Memory { get; }

    uint GrantFrames { get; }

    DomainReservation Reservation { get; }
}

/// <summary>The domains the hypercall server serves, and where it reports what guests do.</summary>
public interface IDomainRegistry
{
    IHostedDomain? Find(ushort domid);

    /// <summary>A guest asked to shut down (SCHEDOP_shutdown).</summary>
    void OnShutdown(ushort domid, ShutdownReason reason);

    /// <summary>A guest's hypercall connection closed: its process exited or died.</summary>
    void OnGuestDisconnected(ushort domid);
}
