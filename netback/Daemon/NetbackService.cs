using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using XenIo.Hypervisor.Daemons;
using XenIo.Hypervisor.Store.Client;
using XenIo.Hypervisor.Store.Transports;
using XenIo.Net.Tap;
using XenIo.Netback.Api;
using XenIo.Netback.Switch;
using XenIo.Netback.Xenbus;
using XenIo.VSwitch.Management;

namespace XenIo.Netback.Daemon;

public sealed class NetbackOptions
{
    /// <summary>Run directory: xenstored's socket is <c>&lt;run&gt;/xenstored/socket</c>, ours <c>&lt;run&gt;/netback.sock</c>.</summary>
    public string RunDirectory { get; set; } = XenIo.Hypervisor.Store.XenstoredOptions.DefaultRunDirectory();

    /// <summary>How long to wait for xenstored's socket at start (xenio up starts them together).</summary>
    public TimeSpan XenstoredWait { get; set; } = TimeSpan.FromSeconds(15);

    public TimeSpan HousekeepingInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Queues a vif offers (multi-queue-max-queues).</summary>
    public int MaxVifQueues { get; set; } = Math.Clamp(Environment.ProcessorCount, 1, 4);

    public static string HypercallSocketPath(string runDirectory) => Path.Combine(runDirectory, "hypercall.sock");

    public static string ApiSocketPath(string runDirectory) => Path.Combine(runDirectory, "netback.sock");
}

/// <summary>
/// The netback daemon's switch half: connects to xenstored, seeds the default bridge when nothing is
/// configured, applies <c>/xenio/switch</c> to live bridges on every change, ages the FDB and retries
/// failed ports on a timer, and serves the HTTP API. A failure (at start, or xenstored going away) sets
/// <see cref="Environment.ExitCode"/> and stops the host.
/// </summary>
public sealed class NetbackService(IOptions<NetbackOptions> options, ILogger<NetbackService> logger, IHostApplicationLifetime lifetime)
    : BackendDaemon("netback", logger, lifetime)
{
    private readonly NetbackOptions _options = options.Value;
    private IReadOnlyList<string> _configErrors = [];

    protected override async Task RunAsync(CancellationToken stoppingToken)
    {
        var xsSocket = XenstoreSocketListener.PathUnder(_options.RunDirectory);
        await using var client = await ConnectWithRetryAsync(() => XenstoreClient.ConnectAsync(xsSocket, stoppingToken), xsSocket, "xenstored", _options.XenstoredWait, stoppingToken).ConfigureAwait(false);
        using var loop = new EpollLoop("vswitch");
        loop.HandlerFailed += e => logger.LogError("vswitch I/O: {Message}", e.Message);
        using var reconciler = new SwitchReconciler(new PortFactory(loop, m => logger.LogWarning("{Message}", m)), m => logger.LogInformation("{Message}", m));

        if (await client.TryReadAsync(SwitchConfigMapping.Root, cancellationToken: stoppingToken).ConfigureAwait(false) is null)
        {
            logger.LogInformation("no switch configuration in xenstore: creating the default bridge xenbr0");
            await SwitchStore.WriteAsync(client, SwitchConfigMapping.ToKeys(SwitchConfig.Default), cancellationToken: stoppingToken).ConfigureAwait(false);
        }

        await using var watch = await client.SubscribeAsync(SwitchConfigMapping.Root, cancellationToken: stoppingToken).ConfigureAwait(false);
        var hypercallSocket = NetbackOptions.HypercallSocketPath(_options.RunDirectory);
        await using var vifs = new VifBackendService(client, () => Hypervisor.Hypercalls.HypercallClient.Connect(hypercallSocket), reconciler.FindBridge,
            m => logger.LogInformation("{Message}", m), _options.MaxVifQueues);
        var api = new NetbackApi(reconciler, () => Volatile.Read(ref _configErrors), m => logger.LogInformation("{Message}", m), () => vifs.Vifs);
        var apiPath = NetbackOptions.ApiSocketPath(_options.RunDirectory);
        await using var server = new UnixHttpServer(apiPath, api.HandleAsync, m => logger.LogWarning("{Message}", m));
        logger.LogInformation("netback serving {Socket}, watching {Root} on {Xenstored}", apiPath, SwitchConfigMapping.Root, xsSocket);

        // Stopped by its own token: when the watch loop below fails, the failure must end the daemon, not
        // wait here for a host stop that nobody requests.
        using var stopHousekeeping = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        using var timer = new PeriodicTimer(_options.HousekeepingInterval);
        var housekeeping = Task.Run(async () =>
        {
            while (await timer.WaitForNextTickAsync(stopHousekeeping.Token).ConfigureAwait(false))
            {
                foreach (var bridge in reconciler.Bridges.Values) bridge.Housekeeping();
                reconciler.FlushMirrors();
                // A port that failed (its TAP still held elsewhere) is tried again without waiting for a config change.
                reconciler.RetryFailed();
            }
        }, stopHousekeeping.Token);

        using var stopVifs = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        var vifTask = Task.Run(() => vifs.RunAsync(stopVifs.Token), stopVifs.Token);
        try
        {
            // The first event of a new watch fires at once, which makes the first apply the restore.
            while (await watch.Events.WaitToReadAsync(stoppingToken).ConfigureAwait(false))
            {
                if (vifTask.IsFaulted) throw new IOException($"vif backends stopped: {vifTask.Exception?.GetBaseException().Message}");
                while (watch.Events.TryRead(out _)) { }
                var errors = new List<ConfigError>();
                var (config, _) = await SwitchStore.ReadAsync(client, errors, stoppingToken).ConfigureAwait(false);
                foreach (var e in errors) logger.LogWarning("switch configuration: {Error}", e.ToString());
                Volatile.Write(ref _configErrors, errors.Select(e => e.ToString()).ToArray());
                reconciler.Apply(config);
            }
            throw new IOException($"the connection to xenstored ({xsSocket}) closed");
        }
        finally
        {
            await stopVifs.CancelAsync().ConfigureAwait(false);
            try { await vifTask.ConfigureAwait(false); }
            catch (OperationCanceledException) { }
            catch (Exception e) when (e is IOException or XenIo.Hypervisor.Store.Client.XenstoreException) { logger.LogWarning("vif backends: {Message}", e.Message); }
            await stopHousekeeping.CancelAsync().ConfigureAwait(false);
            try { await housekeeping.ConfigureAwait(false); }
            catch (OperationCanceledException) { }
        }
    }
}
