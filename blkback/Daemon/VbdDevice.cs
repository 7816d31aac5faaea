using System.Globalization;
using System.Threading.Channels;
using XenIo.Blkback.Images;
using XenIo.Blkback.Rings;
using XenIo.Blkback.Xenbus;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Grants;
using XenIo.Hypervisor.Store.Client;

namespace XenIo.Blkback.Daemon;

/// <summary>
/// One vbd: its image, its xenbus handshake (<see cref="VbdBackendMachine"/>) and its rings while
/// connected. Everything runs on one loop per device, fed by the frontend's watch, the backend's
/// <c>online</c> key and broken-ring reports, so the machine never sees two inputs at once.
/// </summary>
public sealed class VbdDevice : IAsyncDisposable
{
    private readonly XenstoreClient _store;
    private readonly ForeignDomains _domains;
    private readonly BlkbackOptions _options;
    private readonly Action<string> _log;
    private readonly Channel<string?> _events = Channel.CreateUnbounded<string?>();
    private readonly CancellationTokenSource _stop = new();
    private readonly List<BlkifQueueServer> _queues = [];
    private Task? _run;
    private RawImage? _image;
    private VbdBackendMachine? _machine;
    private ForeignDomain? _domain;
    // Set when we start with a frontend already past Initialising (a blkback restart): its rings belong to the
    // backend that died, so nothing is mapped until it starts over (it sees its event channel close and does).
    private bool _awaitFrontendRestart;
    private volatile bool _failed;

    public VbdDevice(XenstoreClient store, ForeignDomains domains, BlkbackOptions options, ushort domid, int devid, Action<string> log)
    {
        _store = store;
        _domains = domains;
        _options = options;
        Domid = domid;
        Devid = devid;
        BackendPath = $"/local/domain/0/backend/vbd/{domid}/{devid.ToString(CultureInfo.InvariantCulture)}";
        _log = m => log($"vbd {domid}/{devid}: {m}");
    }

    public ushort Domid { get; }
    public int Devid { get; }
    public string BackendPath { get; }
    public string? FrontendPath { get; private set; }
    public XenbusState State => _failed ? XenbusState.Closing : _machine?.State ?? XenbusState.Initialising;

    /// <summary>The backend state this device last wrote to xenstore (the write completed); null before its first.</summary>
    public XenbusState? WrittenState { get; private set; }
    public string? Image => _image?.Options.Path;
    public long Served { get { lock (_queues) return _queues.Sum(q => q.Served); } }
    public long Errors { get { lock (_queues) return _queues.Sum(q => q.Errors); } }

    public void Start() => _run = Task.Run(RunAsync);

    private async Task RunAsync()
    {
        var ct = _stop.Token;
        try
        {
            FrontendPath = await _store.TryReadAsync($"{BackendPath}/frontend", cancellationToken: ct).ConfigureAwait(false);
            var feId = await _store.TryReadAsync($"{BackendPath}/frontend-id", cancellationToken: ct).ConfigureAwait(false);
            if (FrontendPath is null || !FrontendPath.StartsWith('/') || feId != Domid.ToString(CultureInfo.InvariantCulture))
            {
                _log("frontend or frontend-id missing or not this domain; ignored");
                return;
            }
            try
            {
                _image = RawImage.Open(await ReadImageOptionsAsync(ct).ConfigureAwait(false));
            }
            catch (ImageOpenException e)
            {
                _failed = true;
                await ApplyAsync([new VbdReportError(e.Message), new VbdSwitchState(XenbusState.Closing)], ct).ConfigureAwait(false);
                return;
            }
            _machine = new VbdBackendMachine(VbdFeatures.ForImage(_image, _options.MaxQueues) with { Persistent = _options.PersistentGrants });
            var feState = ParseState(await _store.TryReadAsync($"{FrontendPath}/state", cancellationToken: ct).ConfigureAwait(false));
            _awaitFrontendRestart = feState is XenbusState.Initialised or XenbusState.Connected;
            if (_awaitFrontendRestart) _log($"frontend is {feState} from an earlier blkback: waiting for it to reconnect");
            await ApplyAsync(_machine.Start(), ct).ConfigureAwait(false);

            await using var feWatch = await _store.SubscribeAsync(FrontendPath, $"blkback-fe-{Domid}-{Devid}", cancellationToken: ct).ConfigureAwait(false);
            await using var onlineWatch = await _store.SubscribeAsync($"{BackendPath}/online", $"blkback-online-{Domid}-{Devid}", cancellationToken: ct).ConfigureAwait(false);
            var pumps = new[] { Pump(feWatch.Events, "frontend", ct), Pump(onlineWatch.Events, "online", ct) };
            while (await _events.Reader.WaitToReadAsync(ct).ConfigureAwait(false))
            {
                bool frontendChanged = false, onlineChanged = false;
                while (_events.Reader.TryRead(out var e))
                {
                    if (e == "frontend") frontendChanged = true;
                    else if (e == "online") onlineChanged = true;
                    else if (e is not null) await ApplyAsync(_machine.OnRingBroken(e), ct).ConfigureAwait(false);
                }
                if (onlineChanged && await _store.TryReadAsync($"{BackendPath}/online", cancellationToken: ct).ConfigureAwait(false) == "0")
                    await ApplyAsync(_machine.Detach(), ct).ConfigureAwait(false);
                if (frontendChanged) await OnFrontendChangedAsync(ct).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested) { }
        catch (Exception e) when (e is XenstoreException or IOException or InvalidDataException)
        {
            _log($"stopped: {e.Message}");
        }
        finally
        {
            DisconnectRings();
        }
    }

    private async Task Pump(ChannelReader<XenstoreWatchEvent> watch, string tag, CancellationToken ct)
    {
        try
        {
            while (await watch.WaitToReadAsync(ct).ConfigureAwait(false))
            {
                while (watch.TryRead(out _)) { }
                _events.Writer.TryWrite(tag);
            }
        }
        catch (OperationCanceledException) { }
    }

    private async Task OnFrontendChangedAsync(CancellationToken ct)
    {
        var state = ParseState(await _store.TryReadAsync($"{FrontendPath}/state", cancellationToken: ct).ConfigureAwait(false));
        if (_awaitFrontendRestart)
        {
            if (state is XenbusState.Initialised or XenbusState.Connected) return;
            _awaitFrontendRestart = false;
        }
        var keys = state is XenbusState.Initialised or XenbusState.Connected ? await ReadFrontendKeysAsync(ct).ConfigureAwait(false) : new Dictionary<string, string>();
        await ApplyAsync(_machine!.OnFrontendChanged(state, keys), ct).ConfigureAwait(false);
    }

    /// <summary>The frontend's ring keys; all guest-written, parsed by the machine. Counts are bounded before they drive reads.</summary>
    private async Task<Dictionary<string, string>> ReadFrontendKeysAsync(CancellationToken ct)
    {
        var keys = new Dictionary<string, string>();
        async Task<string?> Get(string key)
        {
            var v = await _store.TryReadAsync($"{FrontendPath}/{key}", cancellationToken: ct).ConfigureAwait(false);
            if (v is not null) keys[key] = v;
            return v;
        }
        await Get("protocol");
        await Get("feature-persistent");
        var nq = await Get("multi-queue-num-queues");
        var order = await Get("ring-page-order");
        int queues = int.TryParse(nq, NumberStyles.None, CultureInfo.InvariantCulture, out var q) && q >= 1 && q <= _options.MaxQueues ? q : 1;
        int pages = int.TryParse(order, NumberStyles.None, CultureInfo.InvariantCulture, out var o) && o is >= 0 and <= RingGeometry.MaxRingPageOrder ? 1 << o : 1;
        for (int i = 0; i < queues; i++)
        {
            // As the machine parses them: one queue keeps its keys at the top.
            string prefix = queues == 1 ? "" : $"queue-{i}/";
            await Get($"{prefix}event-channel");
            if (order is null) await Get($"{prefix}ring-ref");
            else for (int r = 0; r < pages; r++) await Get($"{prefix}ring-ref{r}");
        }
        return keys;
    }

    private async Task<ImageOptions> ReadImageOptionsAsync(CancellationToken ct)
    {
        async Task<string?> Get(string key) => await _store.TryReadAsync($"{BackendPath}/{key}", cancellationToken: ct).ConfigureAwait(false);
        var path = await Get("params") ?? "";
        var mode = await Get("mode");
        var type = await Get("device-type");
        var format = await Get("format");
        var discard = await Get("discard-enable");
        return new ImageOptions(path)
        {
            ReadOnly = mode is "r" or "ro",
            CdRom = type == "cdrom",
            Format = format,
            Discard = discard != "0",
            Direct = _options.Direct,
            SectorSize = _options.SectorSize,
        };
    }

    private async Task ApplyAsync(IReadOnlyList<VbdAction> actions, CancellationToken ct)
    {
        foreach (var action in actions)
        {
            switch (action)
            {
                case VbdWriteKey w:
                    await _store.WriteUnderAsync(BackendPath, w.Key, w.Value, ct).ConfigureAwait(false);
                    break;
                case VbdSwitchState s:
                    if (await _store.WriteUnderAsync(BackendPath, "state", ((int)s.State).ToString(CultureInfo.InvariantCulture), ct).ConfigureAwait(false))
                        WrittenState = s.State;
                    break;
                case VbdReportError e:
                    _log(e.Message);
                    await _store.WriteUnderAsync(BackendPath, "error", e.Message, ct).ConfigureAwait(false);
                    break;
                case VbdDisconnectRings:
                    DisconnectRings();
                    break;
                case VbdConnectRings c:
                    var follow = ConnectRings(c.Setup, out var why) ? _machine!.OnRingsConnected() : _machine!.OnRingsFailed(why);
                    await ApplyAsync(follow, ct).ConfigureAwait(false);
                    if (follow.OfType<VbdSwitchState>().Any(s => s.State == XenbusState.Connected))
                        _log($"connected: {c.Setup.Queues.Count} queue(s) of {32 << c.Setup.RingPageOrder} slots, {(c.Setup.Persistent ? "persistent grants" : "grant copy")}, image {_image!.Options.Path}{(_image.Options.Direct ? " (O_DIRECT)" : "")}");
                    break;
            }
        }
    }

    private bool ConnectRings(VbdRingSetup setup, out string why)
    {
        DisconnectRings();
        try
        {
            _domain = _domains.Acquire(Domid);
        }
        catch (Exception e) when (e is IOException or InvalidDataException)
        {
            why = $"cannot map domain {Domid}: {e.Message}";
            return false;
        }
        foreach (var q in setup.Queues)
        {
            var pages = MappedRingPages.TryMap(_domain, q.RingRefs, out why);
            if (pages is null) { DisconnectRings(); return false; }
            Hypervisor.Events.EventChannel channel;
            try
            {
                channel = _domains.Hypercalls.BindInterdomain(Domid, q.EventChannel);
            }
            catch (Exception e) when (e is IOException or InvalidDataException)
            {
                pages.Dispose();
                DisconnectRings();
                why = $"event-channel {q.EventChannel}: {e.Message}";
                return false;
            }
            var server = new BlkifQueueServer($"vbd {Domid}/{Devid} queue {q.Queue}", _domain, pages, channel, _image!,
                setup.Persistent, _options.IoWorkersPerQueue, why => _events.Writer.TryWrite(why));
            lock (_queues) _queues.Add(server);
            server.Start();
        }
        why = "";
        return true;
    }

    private void DisconnectRings()
    {
        BlkifQueueServer[] queues;
        lock (_queues)
        {
            queues = [.. _queues];
            _queues.Clear();
        }
        foreach (var q in queues)
        {
            q.Dispose();
            // EVTCHNOP_close: hyperd frees our port; the frontend sees end of file on its end.
            try { _domains.Hypercalls.Close(q.Port); }
            catch (Exception e) when (e is IOException or InvalidDataException) { }
        }
        if (_domain is not null)
        {
            _domain = null;
            _domains.Release(Domid);
        }
    }

    private static XenbusState ParseState(string? value) =>
        int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n is >= 1 and <= 8 ? (XenbusState)n : XenbusState.Unknown;

    /// <summary>The device was removed (block-detach, domain destroyed) or the daemon stops: close its rings and its image.</summary>
    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        if (_run is not null)
        {
            try { await _run.ConfigureAwait(false); } catch (OperationCanceledException) { }
        }
        DisconnectRings();
        _image?.Dispose();
        _stop.Dispose();
    }
}
