using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using XenIo.Hypervisor.Daemons;
using XenIo.Hypervisor.Hypercalls;
using XenIo.Hypervisor.Store.Client;
using XenIo.Hypervisor.Store.Transports;

namespace XenIo.Blkback.Daemon;

/// <summary>
/// The blkback daemon: connects to xenstored and hyperd's hypercall socket, watches
/// <c>/local/domain/0/backend/vbd</c> and runs one <see cref="VbdDevice"/> per backend directory, adding
/// and removing them as the toolstack writes and removes nodes (domain create/destroy, block-attach/-detach).
/// Directories that exist at start are picked up too (a restarted blkback). <c>&lt;run&gt;/blkback.sock</c>
/// answers each connection with one line per vbd and says the daemon is up. A failure at start sets
/// <see cref="Environment.ExitCode"/> and stops the host.
/// </summary>
public sealed class BlkbackService(IOptions<BlkbackOptions> options, ILogger<BlkbackService> logger, IHostApplicationLifetime lifetime)
    : BackendDaemon("blkback", logger, lifetime)
{
    public const string BackendRoot = "/local/domain/0/backend/vbd";
    /// <summary>More vbds than this are refused (a toolstack bug or a flood), not served.</summary>
    public const int MaxDevices = 4096;

    private readonly BlkbackOptions _options = options.Value;
    private readonly Dictionary<(ushort, int), VbdDevice> _devices = [];

    protected override async ValueTask CleanUpAsync()
    {
        foreach (var d in _devices.Values) await d.DisposeAsync().ConfigureAwait(false);
        _devices.Clear();
    }

    protected override async Task RunAsync(CancellationToken stoppingToken)
    {
        var xsSocket = XenstoreSocketListener.PathUnder(_options.RunDirectory);
        var hcSocket = Path.Combine(_options.RunDirectory, "hypercall.sock");
        await using var store = await ConnectWithRetryAsync(() => XenstoreClient.ConnectAsync(xsSocket, stoppingToken), xsSocket, "xenstored", _options.StartWait, stoppingToken).ConfigureAwait(false);
        using var hypercalls = await ConnectWithRetryAsync(() => Task.FromResult(HypercallClient.Connect(hcSocket)), hcSocket, "hyperd", _options.StartWait, stoppingToken).ConfigureAwait(false);
        var domains = new ForeignDomains(hypercalls);

        await using var watch = await store.SubscribeAsync(BackendRoot, "blkback-vbds", cancellationToken: stoppingToken).ConfigureAwait(false);
        var statusPath = BlkbackOptions.StatusSocketPath(_options.RunDirectory);
        using var status = ListeningSocket.Unix(statusPath, UnixFileMode.UserRead | UnixFileMode.UserWrite, backlog: 8);
        var serveStatus = ListeningSocket.AcceptAsync(status, client => _ = ReplyStatusAsync(client, stoppingToken), message => logger.LogWarning("blkback status socket: {Message}", message), stoppingToken);
        logger.LogInformation("blkback watching {Root} on {Xenstored}{Direct}; status on {Socket}", BackendRoot, xsSocket,
            _options.Direct ? " (O_DIRECT)" : "", statusPath);
        try
        {
            // A new watch fires once at once: the first pass picks up what an earlier blkback served.
            while (await watch.Events.WaitToReadAsync(stoppingToken).ConfigureAwait(false))
            {
                while (watch.Events.TryRead(out _)) { }
                await ReconcileAsync(store, domains, stoppingToken).ConfigureAwait(false);
            }
            throw new IOException($"the connection to xenstored ({xsSocket}) closed");
        }
        finally
        {
            // Closing the listener ends its accept loop whether or not the daemon is stopping (a lost
            // xenstored connection ends the loop above without a stop).
            status.Dispose();
            File.Delete(statusPath);
            await serveStatus.ConfigureAwait(false);
        }
    }

    /// <summary>Brings the device set in line with the backend directories that exist now.</summary>
    private async Task ReconcileAsync(XenstoreClient store, ForeignDomains domains, CancellationToken ct)
    {
        // A directory removed and written again between two looks (detach then attach): the toolstack's fresh
        // state=1 under a device we had moved on says so. Start that device over. These are read before the
        // listing below, so the listing shows everything the toolstack did before writing that "1" (the
        // detach of another vbd that held the same image, say): the device is not restarted against a stale view.
        var restart = new List<(ushort, int)>();
        foreach (var (key, device) in _devices.ToList())
        {
            // Only after our own state write has landed can a "1" be someone else's.
            if (device.WrittenState is null or Hypervisor.Abi.XenbusState.Initialising) continue;
            if (await store.TryReadAsync($"{device.BackendPath}/state", cancellationToken: ct).ConfigureAwait(false) == "1")
                restart.Add(key);
        }
        var present = new HashSet<(ushort, int)>();
        foreach (var d in await List(store, BackendRoot, ct).ConfigureAwait(false))
        {
            if (!ushort.TryParse(d, NumberStyles.None, CultureInfo.InvariantCulture, out var domid) || domid == 0) continue;
            foreach (var v in await List(store, $"{BackendRoot}/{d}", ct).ConfigureAwait(false))
                if (int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out var devid) && present.Count < MaxDevices)
                    present.Add((domid, devid));
        }
        foreach (var gone in _devices.Keys.Where(k => !present.Contains(k) || restart.Contains(k)).ToList())
        {
            logger.LogInformation("vbd {Domid}/{Devid}: removed", gone.Item1, gone.Item2);
            var device = _devices[gone];
            _devices.Remove(gone);
            await device.DisposeAsync().ConfigureAwait(false);
        }
        foreach (var (domid, devid) in present.Where(k => !_devices.ContainsKey(k)).Order())
        {
            // A directory half-written by the toolstack: wait until its frontend key is there.
            if (await store.TryReadAsync($"{BackendRoot}/{domid}/{devid}/frontend", cancellationToken: ct).ConfigureAwait(false) is null) continue;
            var device = new VbdDevice(store, domains, _options, domid, devid, m => logger.LogInformation("{Message}", m));
            _devices[(domid, devid)] = device;
            device.Start();
        }
    }

    private static async Task<string[]> List(XenstoreClient store, string path, CancellationToken ct)
    {
        try { return await store.DirectoryAsync(path, cancellationToken: ct).ConfigureAwait(false); }
        catch (XenstoreException) { return []; }
    }

    /// <summary>One line per device to a client of the status socket, which then closes it.</summary>
    private async Task ReplyStatusAsync(Socket client, CancellationToken ct)
    {
        using var _ = client;
        var text = new StringBuilder();
        foreach (var d in _devices.Values.ToArray())
            text.Append(CultureInfo.InvariantCulture, $"{d.Domid}/{d.Devid} {d.State} {d.Image ?? "-"} served={d.Served} errors={d.Errors}\n");
        try { await client.SendAsync(Encoding.UTF8.GetBytes(text.ToString()), SocketFlags.None, ct).ConfigureAwait(false); }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException) { }
    }
}
