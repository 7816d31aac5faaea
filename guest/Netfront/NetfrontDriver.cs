using XenIo.Guest.Devices;

namespace XenIo.Guest.Netfront;

/// <summary>
/// The vif frontend driver: one <see cref="NetfrontDevice"/> per <c>device/vif/&lt;n&gt;</c>, attached
/// and detached as the toolstack adds and removes them (<c>xenio network-attach/-detach</c>). A
/// detached device's connection is torn down and its <c>eth&lt;n&gt;</c> removed.
/// </summary>
internal sealed class NetfrontDriver : IFrontendDriver
{
    private readonly Dictionary<int, (CancellationTokenSource Stop, Task Run)> _devices = [];

    public string Name => "netfront";

    public async Task RunAsync(FrontendContext context, CancellationToken stop)
    {
        try
        {
            await new XenbusDeviceWatcher(context, "vif").RunAsync(
                devid => { Attach(context, devid, stop); return Task.CompletedTask; },
                devid => DetachAsync(devid),
                stop).ConfigureAwait(false);
        }
        finally
        {
            foreach (var devid in _devices.Keys.ToList()) await DetachAsync(devid).ConfigureAwait(false);
        }
    }

    private void Attach(FrontendContext context, int devid, CancellationToken stop)
    {
        var cts = CancellationTokenSource.CreateLinkedTokenSource(stop);
        var device = new NetfrontDevice(context, devid);
        var run = Task.Run(async () =>
        {
            try { await device.RunAsync(cts.Token).ConfigureAwait(false); }
            catch (OperationCanceledException) when (cts.IsCancellationRequested) { }
            catch (Exception e) { context.Log($"netfront: vif/{devid}: stopped: {e.Message}"); }
        }, CancellationToken.None);
        _devices[devid] = (cts, run);
    }

    private async Task DetachAsync(int devid)
    {
        if (!_devices.Remove(devid, out var device)) return;
        await device.Stop.CancelAsync().ConfigureAwait(false);
        await device.Run.ConfigureAwait(false);
        device.Stop.Dispose();
    }
}
