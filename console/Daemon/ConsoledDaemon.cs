using System.Net;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using XenIo.Consoled.Access;
using XenIo.Consoled.Domains;
using XenIo.Hypervisor.Hypercalls;
using XenIo.Hypervisor.Store.Client;
using XenIo.Hypervisor.Store.Transports;

namespace XenIo.Consoled.Daemon;

/// <summary>Settings of <c>xenio consoled</c> beyond the console service's own.</summary>
public sealed class ConsoledDaemonOptions
{
    /// <summary>Run directory: xenstored's socket, hyperd's <c>hypercall.sock</c>, our <c>consoled.sock</c> and token file.</summary>
    public string RunDirectory { get; set; } = XenIo.Hypervisor.Store.XenstoredOptions.DefaultRunDirectory();

    /// <summary>How long to wait for xenstored and hyperd at start (<c>xenio up</c> starts us together).</summary>
    public TimeSpan ConnectWait { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>External VMs' serial sockets served as consoles: name → Unix socket path (QEMU <c>-chardev socket,server=on</c>).</summary>
    public Dictionary<string, string> External { get; set; } = [];

    public static string ApiSocketPath(string runDirectory) => Path.Combine(runDirectory, "consoled.sock");

    public static string TokenFilePath(string runDirectory) => Path.Combine(runDirectory, "consoled", "tokens");

    public static string HypercallSocketPath(string runDirectory) => Path.Combine(runDirectory, "hypercall.sock");
}

/// <summary>
/// <c>xenio consoled</c>: the console service wired to real domains. Connects to xenstored and hyperd,
/// serves every domain's console ring (<see cref="XenDomainConsoles"/>) and any external serial
/// consoles, and opens the API socket for <c>xenio console</c>. Domains that exist when it starts
/// (a restart) are picked up by the first scan. Losing xenstored or hyperd stops it with status 1, for
/// the supervisor to restart it.
/// </summary>
public sealed class ConsoledDaemon : BackgroundService
{
    private readonly ConsoledDaemonOptions _daemon;
    private readonly ConsoledOptions _options;
    private readonly ILoggerFactory _loggers;
    private readonly ILogger _logger;
    private readonly IHostApplicationLifetime _lifetime;
    private readonly ConsoledService _service;
    private XenDomainConsoles? _domains;

    public ConsoledDaemon(ConsoledDaemonOptions daemon, ConsoledOptions options, ILoggerFactory loggers, IHostApplicationLifetime lifetime)
    {
        _daemon = daemon;
        _options = options;
        _options.TokenFile ??= ConsoledDaemonOptions.TokenFilePath(daemon.RunDirectory);
        _loggers = loggers;
        _logger = loggers.CreateLogger("XenIo.Consoled.Daemon");
        _lifetime = lifetime;
        _service = new ConsoledService(options, loggers);
    }

    public ConsoledService Service => _service;

    public XenDomainConsoles? Domains => _domains;

    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        await _service.StartAsync(cancellationToken).ConfigureAwait(false);
        await base.StartAsync(cancellationToken).ConfigureAwait(false);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            await RunAsync(stoppingToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            _logger.LogError("consoled failed: {Message}", e.Message);
            Environment.ExitCode = 1;
            _lifetime.StopApplication();
        }
    }

    private async Task RunAsync(CancellationToken stoppingToken)
    {
        var run = _daemon.RunDirectory;
        var xsSocket = XenstoreSocketListener.PathUnder(run);
        var hcSocket = ConsoledDaemonOptions.HypercallSocketPath(run);
        await using var store = await RetryAsync(() => XenstoreClient.ConnectAsync(xsSocket, stoppingToken), xsSocket,
            "xenstored", stoppingToken).ConfigureAwait(false);
        using var hypercalls = await RetryAsync(() => Task.FromResult(HypercallClient.Connect(hcSocket)), hcSocket, "hyperd", stoppingToken).ConfigureAwait(false);

        foreach (var (name, path) in _daemon.External)
        {
            try
            {
                _service.RegisterExternal(new ConsoleSpec(name), new System.Net.Sockets.UnixDomainSocketEndPoint(path));
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException)
            {
                _logger.LogWarning("external console {Name}: {Message}", name, e.Message);
            }
        }

        await using var domains = new XenDomainConsoles(_service, store, hypercalls, _loggers.CreateLogger("XenIo.Consoled.Domains"));
        _domains = domains;
        var apiPath = ConsoledDaemonOptions.ApiSocketPath(run);
        await using var api = new ConsoleApiServer(apiPath, _service, () => _domains, new AdministratorCheck(_options.AdministratorGroup),
            _loggers.CreateLogger("XenIo.Consoled.Api"));
        _logger.LogInformation("consoled serving {Socket}; console directory on {Address} port {Port}; logs in {Logs}", apiPath,
            _options.Multiplexer.ListenAddress, _service.Multiplexer.DirectoryPort, _options.Log.Directory ?? "(none)");
        try
        {
            await domains.RunAsync(stoppingToken).ConfigureAwait(false);
        }
        finally
        {
            _domains = null;
        }
    }

    private async Task<T> RetryAsync<T>(Func<Task<T>> connect, string socket, string daemon, CancellationToken stoppingToken)
    {
        var deadline = DateTime.UtcNow + _daemon.ConnectWait;
        while (true)
        {
            try
            {
                return await connect().ConfigureAwait(false);
            }
            catch (Exception e) when (e is System.Net.Sockets.SocketException or IOException && DateTime.UtcNow < deadline)
            {
                await Task.Delay(200, stoppingToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is System.Net.Sockets.SocketException or IOException)
            {
                throw new IOException($"{daemon} is not answering on {socket} ({e.Message}); start it with `xenio up`", e);
            }
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        await _service.StopAsync(cancellationToken).ConfigureAwait(false);
    }

    public override void Dispose()
    {
        _service.Dispose();
        base.Dispose();
    }
}

/// <summary>Parses a listen address option: an IP address, or <c>localhost</c>.</summary>
public static class ListenAddress
{
    public static IPAddress Parse(string text) =>
        text == "localhost" ? IPAddress.Loopback : IPAddress.Parse(text);
}
