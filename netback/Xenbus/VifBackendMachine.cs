using System.Globalization;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Xenbus;
using XenIo.Netback.Vif;

namespace XenIo.Netback.Xenbus;

/// <summary>What the vif backend state machine asks its xenstore and data-path layers to do, in order.</summary>
public abstract record VifAction;

/// <summary>Write <see cref="Value"/> at <see cref="Key"/>, relative to the backend directory.</summary>
public sealed record VifWriteKey(string Key, string Value) : VifAction;

/// <summary>Write the backend's <c>state</c> key.</summary>
public sealed record VifSwitchState(XenbusState State) : VifAction;

/// <summary>Map the rings and start serving; report back with OnConnected or OnConnectFailed.</summary>
public sealed record VifConnect(VifConnectSetup Setup) : VifAction;

/// <summary>Stop serving and release everything mapped (idempotent).</summary>
public sealed record VifDisconnect : VifAction;

/// <summary>One log line (xenbus_dev_fatal's message).</summary>
public sealed record VifReportError(string Message) : VifAction;

/// <summary>
/// The backend side of one vif's xenbus handshake, as Linux's xen-netback/xenbus.c runs it, free of
/// xenstore and rings so it can be tested alone:
/// <list type="bullet">
/// <item>Start: feature-sg, feature-gso-tcpv4/v6, feature-ipv6-csum-offload, feature-rx-copy,
/// feature-rx-flip=0, feature-multicast-control, feature-split-event-channels, multi-queue-max-queues,
/// then InitWait.</item>
/// <item>Frontend Initialised or Connected (netfront goes straight to Connected): read its keys, map, Connected.</item>
/// <item>Frontend Closing: disconnect, Closing; Closed/Unknown: disconnect, Closed. Repeats change nothing (XSA-350).</item>
/// <item>Frontend Initialising after we closed or while connected (it restarts): disconnect, InitWait again.</item>
/// <item>A broken ring or failed map: disconnect and Closing, until the frontend starts over.</item>
/// </list>
/// Everything read from the frontend's directory is guest-controlled and parsed strictly.
/// </summary>
public sealed class VifBackendMachine : XenbusBackendMachine<VifAction>
{
    private readonly int _maxQueues;

    public VifBackendMachine(int maxQueues)
    {
        if (maxQueues is < 1 or > 64) throw new ArgumentOutOfRangeException(nameof(maxQueues), "1..64");
        _maxQueues = maxQueues;
    }

    public int MaxQueues => _maxQueues;
    public bool IsConnected => Connected;

    protected override VifAction StateAction(XenbusState state) => new VifSwitchState(state);
    protected override VifAction DisconnectAction() => new VifDisconnect();
    protected override VifAction ErrorAction(string message) => new VifReportError(message);

    /// <summary>The keys the backend publishes before InitWait (Linux netback_probe and xen_net_read_mac/...).</summary>
    public IReadOnlyList<VifAction> Start()
    {
        if (State != XenbusState.Initialising) return [];
        var actions = new List<VifAction>
        {
            new VifWriteKey("feature-sg", "1"),
            new VifWriteKey("feature-gso-tcpv4", "1"),
            new VifWriteKey("feature-gso-tcpv6", "1"),
            new VifWriteKey("feature-ipv6-csum-offload", "1"),
            new VifWriteKey("feature-rx-copy", "1"),
            new VifWriteKey("feature-rx-flip", "0"),
            new VifWriteKey("feature-multicast-control", "1"),
            new VifWriteKey("feature-split-event-channels", "1"),
            new VifWriteKey("multi-queue-max-queues", _maxQueues.ToString(CultureInfo.InvariantCulture)),
        };
        Switch(actions, XenbusState.InitWait);
        return actions;
    }

    /// <summary>True when <see cref="OnFrontendChanged"/> will need the frontend's keys for this state.</summary>
    public bool NeedsKeys(XenbusState frontendState) =>
        frontendState is XenbusState.Initialised or XenbusState.Connected && State == XenbusState.InitWait && !Connecting && !Connected;

    public IReadOnlyList<VifAction> OnFrontendChanged(XenbusState frontendState, IReadOnlyDictionary<string, string> frontendKeys)
    {
        ArgumentNullException.ThrowIfNull(frontendKeys);
        var actions = new List<VifAction>();
        switch (frontendState)
        {
            case XenbusState.Initialising:
                if (State == XenbusState.Closed) Switch(actions, XenbusState.InitWait);
                else if (Connected || Connecting || State == XenbusState.Connected || State == XenbusState.Closing)
                {
                    Disconnect(actions);
                    Switch(actions, XenbusState.InitWait);
                }
                break;

            case XenbusState.Initialised:
            case XenbusState.Connected:
                if (!NeedsKeys(frontendState)) break;
                if (!VifFrontendKeys.TryParse(frontendKeys, _maxQueues, out var setup, out var error)) Refuse(actions, error);
                else BeginConnect(actions, new VifConnect(setup));
                break;

            default:
                OnFrontendClosing(frontendState, actions);
                break;
        }
        return actions;
    }

    public IReadOnlyList<VifAction> OnConnected()
    {
        if (!CompleteConnect()) return [];
        var actions = new List<VifAction>();
        Switch(actions, XenbusState.Connected);
        return actions;
    }

    public IReadOnlyList<VifAction> OnConnectFailed(string why) => Fail($"connecting: {why}");

    /// <summary>The frontend broke the protocol on a connected ring: disconnect this vif only.</summary>
    public IReadOnlyList<VifAction> OnRingBroken(string why) => Fail($"disconnected: {why}");

    /// <summary>The toolstack asks for the device to go (<c>online=0</c>).</summary>
    public IReadOnlyList<VifAction> Detach()
    {
        var actions = new List<VifAction>();
        Disconnect(actions);
        if (State != XenbusState.Closed) Switch(actions, XenbusState.Closing);
        return actions;
    }
}

/// <summary>Parses what netfront publishes (Linux xen-netback's connect_data_rings and read_xenbus_vif_flags).</summary>
public static class VifFrontendKeys
{
    /// <summary>The top-level keys the backend reads; queue keys are <see cref="QueueKeys"/> under <c>queue-N/</c> (or top-level for one queue).</summary>
    public static readonly string[] TopKeys =
    [
        "multi-queue-num-queues", "request-rx-copy", "feature-rx-notify", "feature-sg", "feature-gso-tcpv4", "feature-gso-tcpv6",
        "feature-no-csum-offload", "feature-ipv6-csum-offload", "request-multicast-control",
    ];

    public static readonly string[] QueueKeys = ["tx-ring-ref", "rx-ring-ref", "event-channel", "event-channel-tx", "event-channel-rx"];

    /// <summary>How many queues the keys ask for, bounded by <paramref name="maxQueues"/> (to know which queue keys to read); 1 when unreadable.</summary>
    public static int RequestedQueues(IReadOnlyDictionary<string, string> keys, int maxQueues) =>
        keys.TryGetValue("multi-queue-num-queues", out var q) && FrontendValue.TryNumber(q, out var n) && n >= 1 && n <= (uint)maxQueues ? (int)n : 1;

    public static bool TryParse(IReadOnlyDictionary<string, string> fe, int maxQueues, out VifConnectSetup setup, out string error)
    {
        setup = null!;
        var queues = 1;
        if (fe.TryGetValue("multi-queue-num-queues", out var q))
        {
            if (!FrontendValue.TryNumber(q, out var n) || n < 1 || n > (uint)maxQueues)
            {
                error = $"multi-queue-num-queues '{FrontendValue.Clip(q)}' is not 1..{maxQueues}";
                return false;
            }
            queues = (int)n;
        }
        if (!Flag(fe, "request-rx-copy"))
        {
            error = "the frontend does not request rx-copy (the only RX mode served)";
            return false;
        }
        var list = new List<VifQueueRings>(queues);
        var refs = new HashSet<uint>();
        for (var i = 0; i < queues; i++)
        {
            var prefix = queues == 1 ? "" : $"queue-{i}/";
            if (!TryKey(fe, prefix + "tx-ring-ref", out var tx, out error) || !TryKey(fe, prefix + "rx-ring-ref", out var rx, out error)) return false;
            if (!refs.Add(tx) || !refs.Add(rx))
            {
                error = $"{prefix}ring refs {tx}/{rx} are used twice";
                return false;
            }
            uint txPort, rxPort;
            if (fe.ContainsKey(prefix + "event-channel-tx") || fe.ContainsKey(prefix + "event-channel-rx"))
            {
                if (!TryKey(fe, prefix + "event-channel-tx", out txPort, out error) || !TryKey(fe, prefix + "event-channel-rx", out rxPort, out error)) return false;
                if (txPort == rxPort)
                {
                    error = $"{prefix}event-channel-tx and -rx are the same port {txPort}";
                    return false;
                }
            }
            else
            {
                if (!TryKey(fe, prefix + "event-channel", out txPort, out error)) return false;
                rxPort = txPort;
            }
            if (txPort == 0 || rxPort == 0)
            {
                error = $"{prefix}event channel 0 is not a port";
                return false;
            }
            list.Add(new VifQueueRings(i, tx, rx, txPort, rxPort));
        }
        var features = new VifFrontendFeatures
        {
            Sg = Flag(fe, "feature-sg"),
            GsoTcpV4 = Flag(fe, "feature-gso-tcpv4"),
            GsoTcpV6 = Flag(fe, "feature-gso-tcpv6"),
            CsumOffload = !Flag(fe, "feature-no-csum-offload"),
            Ipv6CsumOffload = Flag(fe, "feature-ipv6-csum-offload"),
            RxNotify = Flag(fe, "feature-rx-notify"),
            MulticastControl = Flag(fe, "request-multicast-control"),
        };
        setup = new VifConnectSetup(features, list);
        error = "";
        return true;
    }

    private static bool TryKey(IReadOnlyDictionary<string, string> fe, string key, out uint value, out string error)
    {
        value = 0;
        if (!fe.TryGetValue(key, out var v) || !FrontendValue.TryNumber(v, out value))
        {
            error = $"{key} missing or not a number";
            return false;
        }
        error = "";
        return true;
    }

    private static bool Flag(IReadOnlyDictionary<string, string> fe, string key) => fe.TryGetValue(key, out var v) && FrontendValue.TryNumber(v, out var n) && n != 0;
}
