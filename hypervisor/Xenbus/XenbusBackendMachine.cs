using XenIo.Hypervisor.Abi;

namespace XenIo.Hypervisor.Xenbus;

/// <summary>
/// What every backend's side of a xenbus handshake shares (Linux's xenbus_switch_state and
/// xenbus_dev_fatal, as netback and blkback use them): the state it last wrote, whether its rings are
/// being connected or are connected, and how a failure, a detach or the frontend closing end that. A
/// device's machine derives from it with its own action records, keys and connect step; like those, it
/// is free of xenstore and rings, and only returns the actions to take, in order.
/// </summary>
public abstract class XenbusBackendMachine<TAction> where TAction : class
{
    /// <summary>The backend state last written.</summary>
    public XenbusState State { get; private set; } = XenbusState.Initialising;

    /// <summary>A connect was asked for and has not reported back yet.</summary>
    protected bool Connecting { get; private set; }

    /// <summary>The rings are mapped and served.</summary>
    protected bool Connected { get; private set; }

    /// <summary>The action that writes the backend's <c>state</c> key.</summary>
    protected abstract TAction StateAction(XenbusState state);

    /// <summary>The action that stops serving and releases what was mapped.</summary>
    protected abstract TAction DisconnectAction();

    /// <summary>The action that logs one line about this device (xenbus_dev_fatal's message).</summary>
    protected abstract TAction ErrorAction(string message);

    /// <summary>Called when the device disconnects, for state a machine keeps about its connection.</summary>
    protected virtual void OnDisconnected() { }

    /// <summary>Adds <paramref name="connect"/>, the action that maps the rings, and waits for it to report back.</summary>
    protected void BeginConnect(List<TAction> actions, TAction connect)
    {
        Connecting = true;
        actions.Add(connect);
    }

    /// <summary>The connect reported success; false when none was pending (a late or repeated report).</summary>
    protected bool CompleteConnect()
    {
        if (!Connecting) return false;
        Connecting = false;
        Connected = true;
        return true;
    }

    /// <summary>What the frontend published cannot be served: say why and close from our side.</summary>
    protected void Refuse(List<TAction> actions, string error)
    {
        actions.Add(ErrorAction(error));
        Switch(actions, XenbusState.Closing);
    }

    /// <summary>
    /// The frontend closing or gone: Closing disconnects and answers Closing, Closed and Unknown
    /// disconnect and answer Closed; repeats change nothing (XSA-350). Any other state changes nothing.
    /// </summary>
    protected void OnFrontendClosing(XenbusState frontendState, List<TAction> actions)
    {
        var answer = frontendState switch
        {
            XenbusState.Closing => XenbusState.Closing,
            XenbusState.Closed or XenbusState.Unknown => XenbusState.Closed,
            _ => (XenbusState?)null,
        };
        if (answer is not { } state) return;
        Disconnect(actions);
        Switch(actions, state);
    }

    /// <summary>A failure on this device only: logged, disconnected and closed, once (nothing more while already closed).</summary>
    protected List<TAction> Fail(string message)
    {
        if (!Connecting && !Connected && State is XenbusState.Closing or XenbusState.Closed) return [];
        var actions = new List<TAction> { ErrorAction(message) };
        Disconnect(actions);
        Switch(actions, XenbusState.Closing);
        return actions;
    }

    protected void Disconnect(List<TAction> actions)
    {
        if (Connected || Connecting) actions.Add(DisconnectAction());
        Connected = false;
        Connecting = false;
        OnDisconnected();
    }

    protected void Switch(List<TAction> actions, XenbusState state)
    {
        if (State == state) return;
        State = state;
        actions.Add(StateAction(state));
    }
}
