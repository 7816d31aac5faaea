using System.Globalization;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Xenbus;

namespace XenIo.Blkback.Xenbus;

/// <summary>
/// The backend side of one vbd's xenbus handshake, as Linux's xen-blkback/xenbus.c runs it, kept
/// free of xenstore and rings so it can be tested alone: inputs are the frontend's state and keys,
/// outputs are key writes and actions, in the order they must happen.
/// <list type="bullet">
/// <item>Start: feature-max-indirect-segments, multi-queue-max-queues, max-ring-page-order, then InitWait.</item>
/// <item>Frontend Initialised (or Connected): read its rings → connect rings → on success feature-flush-cache,
/// feature-discard (+ discard-granularity, -alignment, -secure), feature-barrier, feature-persistent,
/// sectors, info, sector-size, physical-sector-size, then Connected.</item>
/// <item>Frontend Closing/Closed/gone: disconnect, then Closing/Closed; repeating them changes nothing (XSA-350).
/// A frontend that starts again (Initialising) after Closed gets InitWait again.</item>
/// </list>
/// Everything read from the frontend's directory is guest-controlled and parsed strictly.
/// </summary>
public sealed class VbdBackendMachine : XenbusBackendMachine<VbdAction>
{
    public const string NativeProtocol = "x86_64-abi";

    private readonly VbdFeatures _features;

    public VbdBackendMachine(VbdFeatures features)
    {
        ArgumentNullException.ThrowIfNull(features);
        if (features.MaxQueues < 1) throw new ArgumentOutOfRangeException(nameof(features), "MaxQueues ≥ 1");
        if (features.MaxRingPageOrder is < 0 or > RingGeometry.MaxRingPageOrder)
            throw new ArgumentOutOfRangeException(nameof(features), "MaxRingPageOrder 0..4");
        _features = features;
    }

    /// <summary>The rings the frontend asked for, while connecting or connected.</summary>
    public VbdRingSetup? Rings { get; private set; }

    protected override VbdAction StateAction(XenbusState state) => new VbdSwitchState(state);
    protected override VbdAction DisconnectAction() => new VbdDisconnectRings();
    protected override VbdAction ErrorAction(string message) => new VbdReportError(message);
    protected override void OnDisconnected() => Rings = null;

    /// <summary>Publishes what the backend supports before the frontend looks, then InitWait.</summary>
    public IReadOnlyList<VbdAction> Start()
    {
        if (State != XenbusState.Initialising) return [];
        var actions = new List<VbdAction>
        {
            new VbdWriteKey("feature-max-indirect-segments", Num(_features.MaxIndirectSegments)),
            new VbdWriteKey("multi-queue-max-queues", Num(_features.MaxQueues)),
            new VbdWriteKey("max-ring-page-order", Num(_features.MaxRingPageOrder)),
        };
        Switch(actions, XenbusState.InitWait);
        return actions;
    }

    /// <summary>The frontend's <c>state</c> changed (or any of its keys did): <paramref name="frontendKeys"/> is its directory, keys relative.</summary>
    public IReadOnlyList<VbdAction> OnFrontendChanged(XenbusState frontendState, IReadOnlyDictionary<string, string> frontendKeys)
    {
        ArgumentNullException.ThrowIfNull(frontendKeys);
        var actions = new List<VbdAction>();
        switch (frontendState)
        {
            case XenbusState.Initialising:
                // A frontend starting over after we closed (guest agent restart): offer the handshake again.
                // Closing too: a frontend reconnecting after a broken ring or a blkback restart starts over from Initialising.
                if (State is XenbusState.Closed or XenbusState.Closing)
                {
                    Disconnect(actions);
                    Switch(actions, XenbusState.InitWait);
                }
                else if (State == XenbusState.Connected || Connecting)
                {
                    Disconnect(actions);
                    Switch(actions, XenbusState.InitWait);
                }
                break;

            case XenbusState.Initialised:
            case XenbusState.Connected:
                if (State == XenbusState.Connected || Connecting) break; // already done: idempotent
                if (State != XenbusState.InitWait) break; // closing or closed: wait for the frontend to start over
                if (!TryParseRings(frontendKeys, out var setup, out var error))
                {
                    Refuse(actions, error);
                    break;
                }
                Rings = setup;
                BeginConnect(actions, new VbdConnectRings(setup));
                break;

            default:
                // Closing, Closed or gone: close our side too; InitWait, Reconfiguring, Reconfigured or a number Xen does not define: nothing to do.
                OnFrontendClosing(frontendState, actions);
                break;
        }
        return actions;
    }

    /// <summary>The rings of <see cref="VbdConnectRings"/> are mapped and served: publish the disk and go Connected.</summary>
    public IReadOnlyList<VbdAction> OnRingsConnected()
    {
        if (!CompleteConnect()) return [];
        var f = _features;
        var actions = new List<VbdAction>
        {
            new VbdWriteKey("feature-flush-cache", Bool(f.FlushCache)),
            new VbdWriteKey("feature-discard", Bool(f.Discard)),
        };
        if (f.Discard)
        {
            actions.Add(new VbdWriteKey("discard-granularity", Num(f.DiscardGranularity)));
            actions.Add(new VbdWriteKey("discard-alignment", Num(f.DiscardAlignment)));
            actions.Add(new VbdWriteKey("discard-secure", Bool(f.DiscardSecure)));
        }
        actions.Add(new VbdWriteKey("feature-barrier", Bool(f.Barrier)));
        actions.Add(new VbdWriteKey("feature-persistent", Bool(f.Persistent)));
        actions.Add(new VbdWriteKey("sectors", f.Sectors.ToString(CultureInfo.InvariantCulture)));
        actions.Add(new VbdWriteKey("info", Num(f.Info)));
        actions.Add(new VbdWriteKey("sector-size", Num(f.SectorSize)));
        actions.Add(new VbdWriteKey("physical-sector-size", Num(f.PhysicalSectorSize)));
        Switch(actions, XenbusState.Connected);
        return actions;
    }

    /// <summary>Mapping the rings failed (bad grant ref, bad port): fail this vbd only.</summary>
    public IReadOnlyList<VbdAction> OnRingsFailed(string why) => Fail($"mapping rings: {why}");

    /// <summary>A served ring turned out broken (XSA-39: overflowing producer, hostile indirect page): disconnect this vbd.</summary>
    public IReadOnlyList<VbdAction> OnRingBroken(string why) => Fail($"ring broken: {why}");

    /// <summary>The toolstack detaches the device (<c>online=0</c> or removal): close from our side.</summary>
    public IReadOnlyList<VbdAction> Detach()
    {
        var actions = new List<VbdAction>();
        Disconnect(actions);
        Switch(actions, XenbusState.Closing);
        return actions;
    }

    /// <summary>Reads ring-ref / ring-ref0..N, ring-page-order, event-channel, protocol and multi-queue-num-queues.</summary>
    public bool TryParseRings(IReadOnlyDictionary<string, string> fe, out VbdRingSetup setup, out string error)
    {
        setup = null!;
        string protocol = fe.TryGetValue("protocol", out var p) ? p : NativeProtocol;
        if (protocol != NativeProtocol)
        {
            error = $"frontend protocol '{FrontendValue.Clip(protocol)}' is not served (only {NativeProtocol})";
            return false;
        }

        int queues = 1;
        if (fe.TryGetValue("multi-queue-num-queues", out var q))
        {
            if (!FrontendValue.TryNumber(q, out uint nq) || nq < 1 || nq > _features.MaxQueues)
            {
                error = $"multi-queue-num-queues '{FrontendValue.Clip(q)}' is not 1..{_features.MaxQueues}";
                return false;
            }
            queues = (int)nq;
        }

        int order = 0;
        bool multiPage = fe.TryGetValue("ring-page-order", out var o);
        if (multiPage)
        {
            if (!FrontendValue.TryNumber(o!, out uint no) || no > (uint)_features.MaxRingPageOrder)
            {
                error = $"ring-page-order '{FrontendValue.Clip(o!)}' is not 0..{_features.MaxRingPageOrder}";
                return false;
            }
            order = (int)no;
        }

        var list = new List<VbdQueueRings>(queues);
        var seen = new HashSet<uint>();
        for (int i = 0; i < queues; i++)
        {
            // One queue keeps its keys at the top (Linux blkfront does so when it uses one queue).
            string prefix = queues == 1 ? "" : $"queue-{i}/";
            var refs = new uint[1 << order];
            for (int r = 0; r < refs.Length; r++)
            {
                string key = multiPage ? $"{prefix}ring-ref{r}" : $"{prefix}ring-ref";
                if (!fe.TryGetValue(key, out var v) || !FrontendValue.TryNumber(v, out refs[r]))
                {
                    error = $"{key} missing or not a grant ref";
                    return false;
                }
                if (!seen.Add(refs[r]))
                {
                    error = $"{key} {refs[r]} is given twice";
                    return false;
                }
            }
            string evtKey = $"{prefix}event-channel";
            if (!fe.TryGetValue(evtKey, out var e) || !FrontendValue.TryNumber(e, out uint port) || port == 0)
            {
                error = $"{evtKey} missing or not a port";
                return false;
            }
            list.Add(new VbdQueueRings(i, refs, port));
        }

        bool persistent = _features.Persistent && fe.TryGetValue("feature-persistent", out var fp) && fp == "1";
        setup = new VbdRingSetup(order, list, persistent, protocol);
        error = "";
        return true;
    }

    private static string Num(int v) => v.ToString(CultureInfo.InvariantCulture);
    private static string Bool(bool v) => v ? "1" : "0";
}
