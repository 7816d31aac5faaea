using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using XenIo.Hypervisor.Store.Transports;

namespace XenIo.Hypervisor.Store;

/// <summary>Where xenstored keeps its socket and its persisted /xenio subtree, and its limits.</summary>
public sealed class XenstoredOptions
{
    /// <summary>Run directory; the socket is <c>&lt;run&gt;/xenstored/socket</c>.</summary>
    public string RunDirectory { get; set; } = DefaultRunDirectory();

    /// <summary>State directory; /xenio is kept in <c>&lt;state&gt;/xenstore-xenio.json</c>.</summary>
    public string StateDirectory { get; set; } = "/var/lib/xenio";

    public XenstoreQuota Quota { get; set; } = new();

    public static string DefaultRunDirectory()
    {
        if (Environment.UserName == "root") return "/run/xenio";
        var xdg = Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR");
        return string.IsNullOrEmpty(xdg) ? "/run/xenio" : Path.Combine(xdg, "xenio");
    }
}

/// <summary>
/// xenstored as a hosted service: restores /xenio, serves the Unix socket, persists /xenio on change.
/// hyperd hosts the same service and sets <see cref="Xenstored.Mapper"/> for guests' rings.
/// </summary>
public sealed class XenstoredService(IOptions<XenstoredOptions> options, ILoggerFactory loggers, IXenstoreDomainMapper? mapper = null)
    : IHostedService, IAsyncDisposable
{
    private readonly XenstoredOptions _options = options.Value;
    private readonly ILogger _logger = loggers.CreateLogger<XenstoredService>();
    private XenioPersistence? _persistence;
    private XenstoreSocketListener? _listener;

    public Xenstored Daemon { get; } = new(options.Value.Quota, mapper, loggers.CreateLogger<Xenstored>());

    public string SocketPath => XenstoreSocketListener.PathUnder(_options.RunDirectory);

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _persistence = new XenioPersistence(_options.StateDirectory, _logger);
        var restored = _persistence.Load();
        Daemon.RestoreXenio(restored);
        Daemon.XenioChanged = _persistence.Schedule;
        _listener = new XenstoreSocketListener(Daemon, SocketPath, _logger);
        _logger.LogInformation("xenstored: listening on {Socket}; restored {Count} /xenio nodes from {State}",
            SocketPath, restored.Count, _persistence.FilePath);
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_listener is not null) await _listener.DisposeAsync().ConfigureAwait(false);
        _listener = null;
        Daemon.Dispose();
        if (_persistence is not null) await _persistence.DisposeAsync().ConfigureAwait(false);
        _persistence = null;
    }

    public async ValueTask DisposeAsync() => await StopAsync(CancellationToken.None).ConfigureAwait(false);
}
