using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Domains.Spawn;
using XenIo.Hypervisor.Events;
using XenIo.Hypervisor.Memory;
using XenIo.Hypervisor.Store.Client;

namespace XenIo.Guest.Devices;

/// <summary>
/// What the agent's frontends share, as a Linux guest's drivers share its kernel: the domain's memory,
/// grant table, page allocator and hypercall connection (<see cref="Domain"/>), one xenstore connection
/// over the store ring (<see cref="Store"/>; xenbus), the agent's configuration and its log. Built once
/// from the inherited descriptors; every frontend driver gets the same instance.
/// </summary>
public sealed class FrontendContext : IAsyncDisposable
{
    private FrontendContext(GuestDomain domain, XenstoreClient store, AgentConfig config, Action<string> log)
    {
        Domain = domain;
        Store = store;
        Config = config;
        Log = log;
    }

    public GuestDomain Domain { get; }

    /// <summary>The guest's xenstore connection; relative paths are under <c>/local/domain/&lt;domid&gt;</c>.</summary>
    public XenstoreClient Store { get; }

    public AgentConfig Config { get; }

    public ushort Domid => Domain.Domid;

    /// <summary>One line to the agent's log (stderr), prefixed with the domain's name.</summary>
    public Action<string> Log { get; }

    /// <summary>
    /// Maps the domain from its inherited descriptors and opens the store ring (the frame and port hyperd
    /// wrote in <c>store/ring-ref</c> and <c>store/port</c>); null when hyperd gave none (a debug run).
    /// The store and console frames are taken out of the page allocator: the toolstack placed them.
    /// </summary>
    public static FrontendContext? Open(AgentConfig config, Action<string> log)
    {
        if (config is not { MemoryFd: { } memFd, HypercallFd: { } hcFd, StoreFrame: { } frame, StorePort: { } port, StoreEventFd: { } evFd })
            return null;
        var domain = GuestDomain.Attach(memFd, hcFd);
        try
        {
            if (frame < domain.GrantTable.GrantFrames || PageMemory.TryCreate(domain.Memory, frame) is not { } page)
                throw new InvalidDataException($"store frame {frame} is not a page of the domain's memory");
            domain.Pages.Reserve(frame);
            if (config.ConsoleFrame is { } console && console >= domain.Pages.FirstFrame && console < domain.Pages.FrameCount && console != frame)
                domain.Pages.Reserve(console);
            var channel = new EventChannel(port, evFd);
            return new FrontendContext(domain, XenstoreClient.OverRing(page.Memory, new EventChannelDoorbell(channel)), config, log);
        }
        catch
        {
            domain.Dispose();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await Store.DisposeAsync().ConfigureAwait(false);
        Domain.Dispose();
    }
}
