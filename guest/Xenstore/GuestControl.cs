using XenIo.Guest.Devices;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;

namespace XenIo.Guest.Xenstore;

/// <summary>What the toolstack asked of the guest through <c>control/shutdown</c> or <c>control/sysrq</c>.</summary>
internal enum ControlRequest
{
    Poweroff,
    Reboot,

    /// <summary>sysrq 'c': the domain crashes at once, as Linux's does.</summary>
    Crash,
}

/// <summary>
/// The agent's <c>drivers/xen/manage.c</c>: feature and status nodes, and watches on <c>control/shutdown</c> (poweroff,
/// halt, reboot) and <c>control/sysrq</c>. A request is acknowledged by writing the node back empty,
/// as Linux does. Values come from dom0 but are still parsed strictly: anything else is logged and ignored.
/// </summary>
internal sealed class GuestControl(FrontendContext context)
{
    private readonly Action<string> _log = context.Log;

    public XenstoreClient Store { get; } = context.Store;

    /// <summary>Announces the agent (features, <c>data/agent</c>), then serves control requests until cancelled.</summary>
    public async Task RunAsync(Action<ControlRequest> onRequest, CancellationToken cancellationToken)
    {
        await Store.WriteAsync("control/feature-poweroff", "1", cancellationToken: cancellationToken).ConfigureAwait(false);
        await Store.WriteAsync("control/feature-reboot", "1", cancellationToken: cancellationToken).ConfigureAwait(false);
        await using var shutdown = await Store.SubscribeAsync("control/shutdown", "shutdown", cancellationToken: cancellationToken).ConfigureAwait(false);
        await using var sysrq = await Store.SubscribeAsync("control/sysrq", "sysrq", cancellationToken: cancellationToken).ConfigureAwait(false);
        await Store.WriteAsync("data/agent", "running", cancellationToken: cancellationToken).ConfigureAwait(false);
        var shutdownNext = shutdown.Events.WaitToReadAsync(cancellationToken).AsTask();
        var sysrqNext = sysrq.Events.WaitToReadAsync(cancellationToken).AsTask();
        while (true)
        {
            var done = await Task.WhenAny(shutdownNext, sysrqNext).ConfigureAwait(false);
            if (!await done.ConfigureAwait(false)) return; // the ring closed
            if (done == shutdownNext)
            {
                while (shutdown.Events.TryRead(out _)) { }
                if (await TakeAsync("control/shutdown", cancellationToken).ConfigureAwait(false) is { } value)
                {
                    switch (value)
                    {
                        case "poweroff" or "halt": onRequest(ControlRequest.Poweroff); break;
                        case "reboot": onRequest(ControlRequest.Reboot); break;
                        default: _log($"control/shutdown '{Printable(value)}' not understood; ignored"); break;
                    }
                }
                shutdownNext = shutdown.Events.WaitToReadAsync(cancellationToken).AsTask();
            }
            else
            {
                while (sysrq.Events.TryRead(out _)) { }
                if (await TakeAsync("control/sysrq", cancellationToken).ConfigureAwait(false) is { } value)
                {
                    switch (value)
                    {
                        case "o": onRequest(ControlRequest.Poweroff); break;
                        case "b": onRequest(ControlRequest.Reboot); break;
                        case "c": onRequest(ControlRequest.Crash); break;
                        default: _log($"sysrq '{Printable(value)}' has no action here; ignored"); break;
                    }
                }
                sysrqNext = sysrq.Events.WaitToReadAsync(cancellationToken).AsTask();
            }
        }
    }

    /// <summary>Reads a control node and writes it back empty (the guest's acknowledgement); null when empty or gone.</summary>
    private async Task<string?> TakeAsync(string path, CancellationToken cancellationToken)
    {
        string? value;
        try { value = await Store.TryReadAsync(path, cancellationToken: cancellationToken).ConfigureAwait(false); }
        catch (XenstoreException e)
        {
            _log($"{path}: {e.Message}");
            return null;
        }
        if (string.IsNullOrEmpty(value)) return null;
        try { await Store.WriteAsync(path, "", cancellationToken: cancellationToken).ConfigureAwait(false); }
        catch (XenstoreException e) when (e.Error == XsError.EACCES) { _log($"{path}: cannot acknowledge: {e.Message}"); }
        return value;
    }

    /// <summary>Writes the agent's state (<c>data/agent</c>); best effort during shutdown.</summary>
    public async Task ReportAsync(string state)
    {
        try { await Store.WriteAsync("data/agent", state).WaitAsync(TimeSpan.FromSeconds(2)).ConfigureAwait(false); }
        catch (Exception e) when (e is XenstoreException or TimeoutException or IOException or ObjectDisposedException) { }
    }

    private static string Printable(string s) => s.Length > 32 || s.Any(char.IsControl) ? "…" : s;
}
