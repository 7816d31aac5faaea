using System.Globalization;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using XenIo.Consoled.Buffers;
using XenIo.Hypervisor.Abi;
using XenIo.Consoled.Viewers;
using XenIo.Hypervisor.Domains.Spawn;
using XenIo.Hypervisor.Events;
using XenIo.Hypervisor.Grants;
using XenIo.Hypervisor.Hypercalls;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;
using XenIo.Hypervisor.Xenbus;

namespace XenIo.Consoled.Domains;

/// <summary>A domain's console as consoled serves it.</summary>
public sealed record DomainConsole(ushort Domid, string Name, ConsolePorts Ports);

/// <summary>
/// The Xen half of consoled (xenconsoled's <c>io.c</c>): watches domains come and go
/// (<c>@introduceDomain</c>, <c>@releaseDomain</c>, and <c>/local/domain/&lt;id&gt;/console</c> while a
/// domain's console keys are still being written), maps each domain's console page
/// (<c>console/ring-ref</c>, a frame of its memory), binds <c>console/port</c>, and registers the ring
/// with <see cref="ConsoledService"/>. The telnet port is published at
/// <c>/local/domain/&lt;id&gt;/console/telnet-port</c> (dom0's, readable by the guest). A domain that
/// disappears has its console closed; its log stays. Everything read from xenstore about a domain is
/// checked: a bad key leaves that domain without a console and one log line.
/// </summary>
public sealed class XenDomainConsoles : IAsyncDisposable
{
    /// <summary>The key <c>xenio list</c> reads.</summary>
    public const string TelnetPortKey = "console/telnet-port";

    /// <summary>Where the directory port is published.</summary>
    public const string DirectoryPortPath = "/xenio/consoled/directory-port";

    private const ushort Rescan = ushort.MaxValue;

    private readonly ConsoledService _service;
    private readonly XenstoreClient _store;
    private readonly HypercallClient _hypercalls;
    private readonly ILogger _logger;
    private readonly object _gate = new();
    private readonly Dictionary<ushort, Attached> _attached = [];
    private readonly Dictionary<ushort, Pending> _pending = [];
    private readonly Channel<ushort> _work = Channel.CreateUnbounded<ushort>(new UnboundedChannelOptions { SingleReader = true });

    private sealed record Attached(ushort Domid, string Name, ConsolePorts Ports, ForeignDomain Memory, EventChannel Channel);

    private sealed record Pending(XenstoreWatchSubscription Watch, CancellationTokenSource Stop);

    public XenDomainConsoles(ConsoledService service, XenstoreClient store, HypercallClient hypercalls, ILogger logger)
    {
        _service = service;
        _store = store;
        _hypercalls = hypercalls;
        _logger = logger;
    }

    public IReadOnlyList<DomainConsole> Consoles
    {
        get { lock (_gate) return _attached.Values.Select(a => new DomainConsole(a.Domid, a.Name, a.Ports)).OrderBy(c => c.Domid).ToArray(); }
    }

    /// <summary>The console of a domain given by name or id.</summary>
    public DomainConsole? Find(string domain)
    {
        lock (_gate)
        {
            foreach (var a in _attached.Values)
            {
                if (a.Name == domain || a.Domid.ToString(CultureInfo.InvariantCulture) == domain) return new DomainConsole(a.Domid, a.Name, a.Ports);
            }
        }
        return null;
    }

    /// <summary>Serves consoles until cancelled; throws when xenstored goes away.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        await using var introduce = await _store.SubscribeAsync("@introduceDomain", cancellationToken: cancellationToken).ConfigureAwait(false);
        await using var release = await _store.SubscribeAsync("@releaseDomain", cancellationToken: cancellationToken).ConfigureAwait(false);
        var forward = Task.WhenAll(ForwardAsync(introduce, Rescan, cancellationToken), ForwardAsync(release, Rescan, cancellationToken));
        await PublishDirectoryPortAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            while (await _work.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            {
                bool rescan = false;
                var domains = new HashSet<ushort>();
                while (_work.Reader.TryRead(out var item))
                {
                    if (item == Rescan) rescan = true;
                    else domains.Add(item);
                }
                if (rescan) await ScanAsync(cancellationToken).ConfigureAwait(false);
                foreach (var d in domains) await TryAttachAsync(d, cancellationToken).ConfigureAwait(false);
                if (forward.IsCompleted) break;
            }
        }
        finally
        {
            await CloseAllAsync().ConfigureAwait(false);
        }
        await forward.ConfigureAwait(false);
        cancellationToken.ThrowIfCancellationRequested();
        throw new IOException("the connection to xenstored closed");
    }

    private async Task ForwardAsync(XenstoreWatchSubscription watch, ushort item, CancellationToken cancellationToken)
    {
        try
        {
            await foreach (var _ in watch.Events.ReadAllAsync(cancellationToken).ConfigureAwait(false)) _work.Writer.TryWrite(item);
        }
        catch (OperationCanceledException)
        {
        }
        // Watch gone (xenstored closed the connection): wake the loop so it notices.
        _work.Writer.TryWrite(item);
    }

    private async Task PublishDirectoryPortAsync(CancellationToken cancellationToken)
    {
        var port = _service.Multiplexer.DirectoryPort;
        if (port == 0) return;
        try
        {
            await _store.WriteAsync(DirectoryPortPath, port.ToString(CultureInfo.InvariantCulture), cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (XenstoreException e)
        {
            _logger.LogWarning("cannot publish the console directory port: {Message}", e.Message);
        }
    }

    /// <summary>Compares /local/domain with what we serve: new domains are attached, vanished ones closed.</summary>
    private async Task ScanAsync(CancellationToken cancellationToken)
    {
        string[] entries;
        try
        {
            entries = await _store.DirectoryAsync("/local/domain", cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (XenstoreException e) when (e.Error == XsError.ENOENT)
        {
            entries = [];
        }
        var present = new HashSet<ushort>();
        foreach (var e in entries)
        {
            if (ushort.TryParse(e, NumberStyles.None, CultureInfo.InvariantCulture, out var id) && id != 0 && id < DomainIds.FirstReserved
                && await IntroducedAsync(id, cancellationToken).ConfigureAwait(false))
                present.Add(id);
        }
        ushort[] gone, pendingGone;
        lock (_gate)
        {
            gone = _attached.Keys.Where(id => !present.Contains(id)).ToArray();
            pendingGone = _pending.Keys.Where(id => !present.Contains(id)).ToArray();
        }
        foreach (var id in gone) await DetachAsync(id).ConfigureAwait(false);
        foreach (var id in pendingGone) await StopPendingAsync(id).ConfigureAwait(false);
        foreach (var id in present)
        {
            bool known;
            lock (_gate) known = _attached.ContainsKey(id) || _pending.ContainsKey(id);
            if (!known) await TryAttachAsync(id, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// A domain being destroyed is released (@releaseDomain) before the toolstack removes its
    /// directory, so the directory alone does not say it lives; xenconsoled asks the hypervisor, we
    /// ask xenstored whether it still serves the domain.
    /// </summary>
    private async Task<bool> IntroducedAsync(ushort domid, CancellationToken cancellationToken)
    {
        try
        {
            return await _store.IsDomainIntroducedAsync(domid, cancellationToken).ConfigureAwait(false);
        }
        catch (XenstoreException)
        {
            return false;
        }
    }

    /// <summary>Attaches a domain's console if its keys are all there, else watches its console directory.</summary>
    private async Task TryAttachAsync(ushort domid, CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            if (_attached.ContainsKey(domid)) return;
        }
        var dir = $"/local/domain/{domid.ToString(CultureInfo.InvariantCulture)}";
        string? name, ringRef, port, limit;
        try
        {
            name = await _store.TryReadAsync(dir + "/name", cancellationToken: cancellationToken).ConfigureAwait(false);
            ringRef = await _store.TryReadAsync(dir + "/console/ring-ref", cancellationToken: cancellationToken).ConfigureAwait(false);
            port = await _store.TryReadAsync(dir + "/console/port", cancellationToken: cancellationToken).ConfigureAwait(false);
            limit = await _store.TryReadAsync(dir + "/console/limit", cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (XenstoreException e)
        {
            _logger.LogWarning("domain {Domid}: cannot read its console keys: {Message}", domid, e.Message);
            return;
        }
        if (name is null || ringRef is null || port is null)
        {
            await WatchPendingAsync(domid, dir + "/console", cancellationToken).ConfigureAwait(false);
            return;
        }
        await StopPendingAsync(domid).ConfigureAwait(false);
        if (!uint.TryParse(ringRef, NumberStyles.None, CultureInfo.InvariantCulture, out var frame)
            || !uint.TryParse(port, NumberStyles.None, CultureInfo.InvariantCulture, out var evtchn) || evtchn == 0)
        {
            _logger.LogWarning("domain {Domid}: console/ring-ref '{Ref}' or console/port '{Port}' is not a number; no console", domid, FrontendValue.Clip(ringRef), FrontendValue.Clip(port));
            return;
        }
        int outputLimit = ConsoleOutputBuffer.DefaultLimit;
        if (limit is not null && (!int.TryParse(limit, NumberStyles.None, CultureInfo.InvariantCulture, out outputLimit) || outputLimit < 4096))
        {
            _logger.LogWarning("domain {Domid}: console/limit '{Limit}' is not a size of at least 4096; using the default", domid, FrontendValue.Clip(limit));
            outputLimit = ConsoleOutputBuffer.DefaultLimit;
        }
        Attach(domid, ConsoleName(domid, name), frame, evtchn, Math.Min(outputLimit, 64 << 20));
        ConsolePorts? ports;
        lock (_gate) ports = _attached.TryGetValue(domid, out var attached) ? attached.Ports : null;
        if (ports is not null) await PublishAsync(domid, ports, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The domain's name when it is a safe one and not taken, else <c>domain-&lt;id&gt;</c> / <c>&lt;name&gt;-&lt;id&gt;</c>.</summary>
    private string ConsoleName(ushort domid, string name)
    {
        var id = domid.ToString(CultureInfo.InvariantCulture);
        if (!KernelNames.IsValid(name)) return $"domain-{id}";
        return _service.Multiplexer.Find(name) is null ? name : $"{name}-{id}";
    }

    private void Attach(ushort domid, string name, uint frame, uint port, int outputLimit)
    {
        ForeignDomain? memory = null;
        EventChannel? channel = null;
        try
        {
            memory = _hypercalls.MapForeign(domid);
            if (!memory.Memory.TryGetPage(frame, out var page) || frame < memory.GrantFrames)
            {
                _logger.LogWarning("domain {Domid}: console/ring-ref {Frame} is not a page of its memory; no console", domid, frame);
                memory.Dispose();
                return;
            }
            nint address;
            unsafe
            {
                fixed (byte* p = page) address = (nint)p; // the mapping lives as long as `memory`
            }
            channel = _hypercalls.BindInterdomain(domid, port);
            var doorbell = new EventChannelConsoleDoorbell(channel);
            var store = _store;
            var sysrqPath = $"/local/domain/{domid.ToString(CultureInfo.InvariantCulture)}/control/sysrq";
            var spec = new ConsoleSpec(name)
            {
                OutputLimit = outputLimit,
                SysrqRequested = key => _ = WriteSysrqAsync(store, sysrqPath, key),
            };
            var registration = _service.RegisterRing(spec, address, doorbell);
            lock (_gate) _attached[domid] = new Attached(domid, name, registration.Ports, memory, channel);
            _logger.LogInformation("domain {Domid} ({Name}): console on telnet port {Port}{Polling}", domid, name, registration.Ports.TelnetPort,
                doorbell.Polling ? " (its event channel endpoint is closed: polling)" : "");
        }
        catch (Exception e) when (e is HypercallException or IOException or InvalidDataException or InvalidOperationException or ArgumentException)
        {
            _logger.LogWarning("domain {Domid}: cannot attach its console: {Message}", domid, e.Message);
            channel?.Dispose();
            memory?.Dispose();
        }
    }

    private async Task WriteSysrqAsync(XenstoreClient store, string path, char key)
    {
        try
        {
            await store.WriteAsync(path, key.ToString(), cancellationToken: CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is XenstoreException or IOException or ObjectDisposedException)
        {
            _logger.LogWarning("cannot write {Path}: {Message}", path, e.Message);
        }
    }

    /// <summary>Writes the telnet port where <c>xenio list</c> and the guest look: dom0's node, the guest may read it.</summary>
    private async Task PublishAsync(ushort domid, ConsolePorts ports, CancellationToken cancellationToken)
    {
        var path = $"/local/domain/{domid.ToString(CultureInfo.InvariantCulture)}/{TelnetPortKey}";
        try
        {
            // One transaction: a new node inherits the guest-owned console directory's permissions, and the
            // guest must never see (or get to rewrite) the port between the write and the chmod.
            XenstorePermission[] perms = [new(0, XenstoreAccess.None), new(domid, XenstoreAccess.Read)];
            var port = ports.TelnetPort.ToString(CultureInfo.InvariantCulture);
            await _store.TransactAsync(async tx =>
            {
                await _store.WriteAsync(path, port, tx, cancellationToken).ConfigureAwait(false);
                await _store.SetPermsAsync(path, perms, tx, cancellationToken).ConfigureAwait(false);
            }, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (XenstoreException e)
        {
            _logger.LogWarning("domain {Domid}: cannot publish its telnet port: {Message}", domid, e.Message);
        }
    }

    private async Task WatchPendingAsync(ushort domid, string path, CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            if (_pending.ContainsKey(domid)) return;
        }
        XenstoreWatchSubscription watch;
        try
        {
            watch = await _store.SubscribeAsync(path, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (XenstoreException e)
        {
            _logger.LogWarning("domain {Domid}: cannot watch {Path}: {Message}", domid, path, e.Message);
            return;
        }
        var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        lock (_gate) _pending[domid] = new Pending(watch, stop);
        _ = ForwardAsync(watch, domid, stop.Token);
    }

    private async Task StopPendingAsync(ushort domid)
    {
        Pending? pending;
        lock (_gate)
        {
            if (!_pending.Remove(domid, out pending)) return;
        }
        await pending.Stop.CancelAsync().ConfigureAwait(false);
        await pending.Watch.DisposeAsync().ConfigureAwait(false);
        pending.Stop.Dispose();
    }

    /// <summary>The domain is gone: closes its console (viewers are told by the connection closing); the log stays.</summary>
    private async Task DetachAsync(ushort domid)
    {
        Attached? attached;
        lock (_gate)
        {
            if (!_attached.Remove(domid, out attached)) return;
        }
        await _service.UnregisterAsync(attached.Name).ConfigureAwait(false);
        try
        {
            _hypercalls.Close(attached.Channel.Port);
        }
        catch (Exception e) when (e is HypercallException or IOException or InvalidDataException)
        {
            // The domain's ports went with it.
        }
        attached.Channel.Dispose();
        attached.Memory.Dispose();
        _logger.LogInformation("domain {Domid} ({Name}) is gone: console closed, log kept", domid, attached.Name);
    }

    private async Task CloseAllAsync()
    {
        ushort[] ids;
        lock (_gate) ids = [.. _attached.Keys];
        foreach (var id in ids)
        {
            // A clean stop withdraws the port it published; a restarted consoled publishes its own.
            try
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                await _store.RmAsync($"/local/domain/{id.ToString(CultureInfo.InvariantCulture)}/{TelnetPortKey}", cancellationToken: timeout.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is XenstoreException or IOException or OperationCanceledException or ObjectDisposedException)
            {
            }
            await DetachAsync(id).ConfigureAwait(false);
        }
        ushort[] pending;
        lock (_gate) pending = [.. _pending.Keys];
        foreach (var id in pending) await StopPendingAsync(id).ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        _work.Writer.TryComplete();
        await CloseAllAsync().ConfigureAwait(false);
    }
}
