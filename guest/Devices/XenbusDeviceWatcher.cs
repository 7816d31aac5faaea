using System.Globalization;

namespace XenIo.Guest.Devices;

/// <summary>
/// Finds a frontend kind's devices and follows them at runtime, as xenbus's frontend probe does: watches
/// <c>device/&lt;kind&gt;</c>, and on every change compares the directory with the devices it knows,
/// calling <c>attach</c> for a new devid and <c>detach</c> for one the toolstack removed
/// (<c>xenio network-detach</c>, <c>block-detach</c>). Entries that are not device numbers are ignored.
/// </summary>
public sealed class XenbusDeviceWatcher(FrontendContext context, string kind)
{
    /// <summary>Linux's limit on devids is far larger; a guest with more devices than this is refused the rest.</summary>
    public const int MaxDevices = 256;

    private readonly HashSet<int> _known = [];

    /// <summary>Runs until <paramref name="stop"/> fires or the store closes; callbacks run one at a time.</summary>
    public async Task RunAsync(Func<int, Task> attach, Func<int, Task> detach, CancellationToken stop)
    {
        var dir = $"/local/domain/{context.Domid}/device/{kind}";
        await using var watch = await context.Store.SubscribeAsync(dir, $"{kind}-devices", cancellationToken: stop).ConfigureAwait(false);
        while (await watch.Events.WaitToReadAsync(stop).ConfigureAwait(false))
        {
            while (watch.Events.TryRead(out _)) { }
            string[] entries;
            try { entries = await context.Store.DirectoryAsync(dir, cancellationToken: stop).ConfigureAwait(false); }
            catch (Hypervisor.Store.Client.XenstoreException) { entries = []; }
            var present = new HashSet<int>();
            foreach (var entry in entries)
                if (int.TryParse(entry, NumberStyles.None, CultureInfo.InvariantCulture, out var devid) && present.Count < MaxDevices)
                    present.Add(devid);
            foreach (var gone in _known.Where(d => !present.Contains(d)).Order().ToList())
            {
                _known.Remove(gone);
                await detach(gone).ConfigureAwait(false);
            }
            foreach (var added in present.Where(d => !_known.Contains(d)).Order().ToList())
            {
                _known.Add(added);
                await attach(added).ConfigureAwait(false);
            }
        }
    }
}
