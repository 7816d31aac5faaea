using System.Diagnostics.CodeAnalysis;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using XenIo.Hypervisor.Events;
using XenIo.Hypervisor.Memory;
using XenIo.Hypervisor.Store.Transports;

namespace XenIo.Hypervisor.Domains;

/// <summary>
/// How xenstored, hosted in hyperd, reaches a guest introduced with XS_INTRODUCE: the store page is
/// frame <c>gfn</c> of hyperd's own mapping of the domain's memory, and dom0 binds an interdomain
/// event channel to the port the guest allocated for it (as xenstored does with
/// <c>xenevtchn_bind_interdomain</c>). Every argument comes from the toolstack but describes the
/// guest's memory and ports, so each is checked and a bad one refuses the introduction.
/// </summary>
public sealed class XenstoreDomainMapper(CoreHost host, ILogger? logger = null) : IXenstoreDomainMapper
{
    /// <summary>The owner id of hyperd's own dom0 ports (hypercall connections number from 1).</summary>
    public const long XenstoredPortOwner = -1;

    private readonly ILogger _logger = logger ?? NullLogger.Instance;

    public bool TryMap(ushort domId, ulong gfn, uint remotePort, [NotNullWhen(true)] out XenstoreDomainRing? ring)
    {
        ring = null;
        if (host.Find(domId) is not { } domain)
        {
            _logger.LogWarning("xenstore introduce of domain {Domid}: no such domain", domId);
            return false;
        }
        // Frames 0..GrantFrames-1 are the grant table, which the guest must not be able to pass off as its store page.
        if (gfn > uint.MaxValue || gfn < domain.GrantFrames || PageMemory.TryCreate(domain.Memory, (uint)gfn) is not { } page)
        {
            _logger.LogWarning("xenstore introduce of domain {Domid}: frame {Gfn:x} is not a page of its memory", domId, gfn);
            return false;
        }
        int port = host.Events.BindInterdomain(0, XenstoredPortOwner, domId, remotePort, out var endpoint);
        if (port < 0 || endpoint is null)
        {
            _logger.LogWarning("xenstore introduce of domain {Domid}: cannot bind its port {Port} (errno {Errno})", domId, remotePort, -port);
            return false;
        }
        var channel = new EventChannel((uint)port, (int)endpoint.DangerousGetHandle());
        endpoint.SetHandleAsInvalid(); // the EventChannel owns the descriptor now
        ring = new XenstoreDomainRing(page.Memory, new EventChannelDoorbell(channel), new PortRelease(host.Events, (uint)port));
        return true;
    }

    /// <summary>Closes hyperd's end of the store port when xenstored lets go of the ring (XS_RELEASE).</summary>
    private sealed class PortRelease(EventChannelTable events, uint port) : IDisposable
    {
        private int _done;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _done, 1) == 0) events.Close(0, XenstoredPortOwner, port);
        }
    }
}

/// <summary>An <see cref="EventChannel"/> as xenstore's transport sees it.</summary>
public sealed class EventChannelDoorbell(EventChannel channel) : IEventChannelDoorbell
{
    public void Notify() => channel.Notify();

    public ValueTask<bool> WaitAsync(CancellationToken cancellationToken) => channel.WaitAsync(cancellationToken);

    public void Dispose() => channel.Dispose();
}
