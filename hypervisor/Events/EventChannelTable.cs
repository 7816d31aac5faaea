using Microsoft.Win32.SafeHandles;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Interop;

namespace XenIo.Hypervisor.Events;

/// <summary>
/// hyperd's event channel state for every domain (Xen's <c>event_channel.c</c>): which ports exist,
/// who may bind an unbound port and who is bound to whom. The endpoints themselves are socketpair
/// ends: an unbound port's pair is held here; <c>bind_interdomain</c> hands the second end to the
/// binder and lets go of both, so from then on notifications never pass through hyperd.
/// Results are port numbers or negative errno values, as Xen's hypercalls return.
/// </summary>
public sealed class EventChannelTable
{
    public const int EINVAL = 22;
    public const int EPERM = 1;
    public const int ENOSPC = 28;
    public const int ESRCH = 3;
    public const int EMFILE = 24;

    /// <summary>Ports per domain, port 0 never used: Xen's default <c>max_event_channels</c> for a domU (1023).</summary>
    public const int MaxPorts = 1024;

    /// <summary>
    /// Unbound ports per domain. Each holds a socketpair in hyperd until it is bound, so a guest
    /// allocating ports in a loop would otherwise spend hyperd's descriptors; real guests need a few per device.
    /// </summary>
    public const int MaxUnboundPorts = 64;

    /// <summary>
    /// The owner of ports the toolstack allocated on a domain's behalf (its store and console ports,
    /// handed to the agent at start). The domain itself may fetch their endpoint again, which it needs
    /// when the backend on the other side restarted: the old endpoint is then at end of file.
    /// </summary>
    public const long ToolstackOwner = -2;

    private readonly object _gate = new();
    private readonly Dictionary<ushort, Port[]> _domains = [];

    private enum State { Free, Unbound, Interdomain }

    private sealed class Port
    {
        public State State;
        public ushort RemoteDom;
        public uint RemotePort;
        public long Owner;
        /// <summary>While unbound: the end the allocating domain uses, and the end the binder will get.</summary>
        public SafeFileHandle? LocalEnd, PeerEnd;

        /// <summary>
        /// The port went back to unbound with a fresh pair and the allocating domain has not fetched its
        /// new end yet: a bind keeps <see cref="LocalEnd"/> until it does.
        /// </summary>
        public bool Unfetched;
    }

    public void AddDomain(ushort domid)
    {
        lock (_gate) _domains.TryAdd(domid, new Port[MaxPorts]);
    }

    /// <summary>Closes every port of a domain being destroyed; their peers return to unbound.</summary>
    public void RemoveDomain(ushort domid)
    {
        lock (_gate)
        {
            if (!_domains.TryGetValue(domid, out var ports)) return;
            for (uint p = 1; p < ports.Length; p++)
                if (ports[p] is { State: not State.Free }) CloseLocked(domid, ports, p);
            _domains.Remove(domid);
        }
    }

    /// <summary>
    /// <c>EVTCHNOP_alloc_unbound</c>: a new port of <paramref name="dom"/> that only
    /// <paramref name="remoteDom"/> may bind. <paramref name="endpoint"/> is a duplicate of the
    /// caller's end, to be sent and then disposed.
    /// </summary>
    public int AllocUnbound(ushort dom, long owner, ushort remoteDom, out SafeFileHandle? endpoint)
    {
        endpoint = null;
        if (remoteDom == DomainIds.Self) remoteDom = dom;
        if (remoteDom >= DomainIds.FirstReserved) return -ESRCH;
        lock (_gate)
        {
            if (!_domains.TryGetValue(dom, out var ports)) return -ESRCH;
            int port = FreePort(ports);
            if (port < 0 || CountUnbound(ports) >= MaxUnboundPorts) return -ENOSPC;
            if (!NewPair(out var local, out var peer)) return -EMFILE;
            ports[port] = new Port { State = State.Unbound, RemoteDom = remoteDom, Owner = owner, LocalEnd = local, PeerEnd = peer };
            endpoint = Memory.DomainMemory.DuplicateHandle(local!);
            return port;
        }
    }

    /// <summary>
    /// <c>EVTCHNOP_bind_interdomain</c>: binds a new port of <paramref name="dom"/> to
    /// <paramref name="remoteDom"/>'s unbound <paramref name="remotePort"/>, which must have been
    /// allocated for <paramref name="dom"/>. The new port is pending once. <paramref name="endpoint"/>
    /// is the caller's end; the caller sends it and then disposes it.
    /// </summary>
    public unsafe int BindInterdomain(ushort dom, long owner, ushort remoteDom, uint remotePort, out SafeFileHandle? endpoint)
    {
        endpoint = null;
        if (remoteDom == DomainIds.Self) remoteDom = dom;
        lock (_gate)
        {
            if (!_domains.TryGetValue(dom, out var ports)) return -ESRCH;
            if (!_domains.TryGetValue(remoteDom, out var remotePorts)) return -ESRCH;
            if (remotePort == 0 || remotePort >= MaxPorts || remotePorts[remotePort] is not { } remote) return -EINVAL;
            if (remote.State != State.Unbound || remote.RemoteDom != dom) return -EINVAL;
            if (remote.LocalEnd is null || remote.PeerEnd is null) return -EMFILE;
            int port = FreePort(ports);
            if (port < 0) return -ENOSPC;
            // evtchn_bind_interdomain sets the new local port pending: one byte from the remote's end.
            byte one = 1;
            Libc.send((int)remote.LocalEnd!.DangerousGetHandle(), &one, 1, Libc.MSG_DONTWAIT | Libc.MSG_NOSIGNAL);
            endpoint = remote.PeerEnd;
            if (!remote.Unfetched)
            {
                remote.LocalEnd.Dispose();
                remote.LocalEnd = null;
            }
            remote.PeerEnd = null;
            remote.State = State.Interdomain;
            remote.RemotePort = (uint)port;
            ports[port] = new Port { State = State.Interdomain, RemoteDom = remoteDom, RemotePort = remotePort, Owner = owner };
            return port;
        }
    }

    /// <summary>
    /// <c>EVTCHNOP_close</c>. An interdomain peer returns to unbound (bindable again by this domain)
    /// with a fresh endpoint pair; its old endpoint sees end of file once our process closes its end.
    /// A dom0 port may only be closed by the connection that made it.
    /// </summary>
    public int Close(ushort dom, long owner, uint port)
    {
        lock (_gate)
        {
            if (!_domains.TryGetValue(dom, out var ports)) return -ESRCH;
            if (port == 0 || port >= MaxPorts || ports[port] is not { State: not State.Free } p) return -EINVAL;
            if (p.Owner != owner) return -EPERM;
            CloseLocked(dom, ports, port);
            return 0;
        }
    }

    /// <summary>Closes every port a connection made (it closed or its process died).</summary>
    public int CloseOwnedBy(ushort dom, long owner)
    {
        lock (_gate)
        {
            if (!_domains.TryGetValue(dom, out var ports)) return 0;
            int closed = 0;
            for (uint p = 1; p < ports.Length; p++)
            {
                if (ports[p] is { State: not State.Free } port && port.Owner == owner)
                {
                    CloseLocked(dom, ports, p);
                    closed++;
                }
            }
            return closed;
        }
    }

    /// <summary><c>EVTCHNOP_status</c>.</summary>
    public int Status(ushort dom, uint port, out EventChannelStatus status, out ushort remoteDom, out uint remotePort)
    {
        status = EventChannelStatus.Closed;
        remoteDom = 0;
        remotePort = 0;
        lock (_gate)
        {
            if (!_domains.TryGetValue(dom, out var ports)) return -ESRCH;
            if (port == 0 || port >= MaxPorts) return -EINVAL;
            if (ports[port] is not { State: not State.Free } p) return 0;
            remoteDom = p.RemoteDom;
            if (p.State == State.Unbound)
            {
                status = EventChannelStatus.Unbound;
            }
            else
            {
                status = EventChannelStatus.Interdomain;
                remotePort = p.RemotePort;
            }
            return 0;
        }
    }

    /// <summary>
    /// The allocating domain's end of a port again (as a duplicate to send and dispose): after its peer
    /// closed, the port is unbound with a fresh pair and its old endpoint is at end of file. The fresh end
    /// stays fetchable after a new peer has bound, until fetched once. Ports the toolstack allocated for
    /// the domain (<see cref="ToolstackOwner"/>) may be fetched by the domain's own connections.
    /// </summary>
    public int Endpoint(ushort dom, long owner, uint port, out SafeFileHandle? endpoint)
    {
        endpoint = null;
        lock (_gate)
        {
            if (!_domains.TryGetValue(dom, out var ports)) return -ESRCH;
            if (port == 0 || port >= MaxPorts || ports[port] is not { State: not State.Free } p) return -EINVAL;
            if (p.State != State.Unbound && !p.Unfetched) return -EINVAL;
            if (p.Owner != owner && p.Owner != ToolstackOwner) return -EPERM;
            if (p.LocalEnd is null) return -EMFILE;
            endpoint = Memory.DomainMemory.DuplicateHandle(p.LocalEnd);
            p.Unfetched = false;
            if (p.State == State.Interdomain)
            {
                // Bound meanwhile: the domain now holds its end, ours only kept it for this fetch.
                p.LocalEnd.Dispose();
                p.LocalEnd = null;
            }
            return 0;
        }
    }

    private void CloseLocked(ushort dom, Port[] ports, uint port)
    {
        var p = ports[port];
        ports[port] = null!;
        p.LocalEnd?.Dispose();
        p.PeerEnd?.Dispose();
        if (p.State != State.Interdomain) return;
        if (!_domains.TryGetValue(p.RemoteDom, out var remotePorts)) return;
        if (remotePorts[p.RemotePort] is not { State: State.Interdomain } remote || remote.RemotePort != port || remote.RemoteDom != dom) return;
        // Back to unbound, as evtchn_close does for the remote end: bindable by us again.
        remote.State = State.Unbound;
        remote.RemoteDom = dom;
        remote.RemotePort = 0;
        remote.LocalEnd?.Dispose(); // an end kept for a fetch that never came
        remote.LocalEnd = remote.PeerEnd = null;
        remote.Unfetched = false;
        if (NewPair(out var local, out var peer))
        {
            remote.LocalEnd = local;
            remote.PeerEnd = peer;
            remote.Unfetched = true;
        }
    }

    private static int CountUnbound(Port[] ports)
    {
        int unbound = 0;
        for (int p = 1; p < ports.Length; p++)
            if (ports[p] is { State: State.Unbound }) unbound++;
        return unbound;
    }

    private static int FreePort(Port[] ports)
    {
        for (int p = 1; p < ports.Length; p++)
            if (ports[p] is null || ports[p].State == State.Free) return p;
        return -1;
    }

    private static bool NewPair(out SafeFileHandle? local, out SafeFileHandle? peer)
    {
        if (!Libc.TrySocketPair(Libc.SOCK_STREAM, out int a, out int b))
        {
            local = peer = null;
            return false;
        }
        local = new SafeFileHandle(a, ownsHandle: true);
        peer = new SafeFileHandle(b, ownsHandle: true);
        return true;
    }
}
