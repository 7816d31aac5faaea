using System.Net;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using XenIo.Consoled.Access;
using XenIo.Consoled.External;
using XenIo.Consoled.Logs;
using XenIo.Consoled.Rings;
using XenIo.Consoled.Viewers;

namespace XenIo.Consoled;

/// <summary>
/// The console daemon: consoles are registered through this API (a Xen console ring with its page and
/// doorbell, or an external VM's serial socket), each gets a hub (log, scrollback, viewers) and ports
/// on the multiplexer. Set-up happens in <see cref="StartAsync"/> so the directory port exists when the
/// host reports ready. Guest misbehaviour never escapes a console's own task.
/// </summary>
public sealed class ConsoledService : BackgroundService
{
    private readonly object _gate = new();
    private readonly Dictionary<string, Running> _consoles = new(StringComparer.Ordinal);
    private readonly ConsoledOptions _options;
    private readonly ILoggerFactory _loggers;
    private readonly ILogger _logger;
    private readonly ConsoleTokens _tokens;
    private readonly ConsoleMultiplexer _multiplexer;
    private CancellationToken _stopping = CancellationToken.None;

    private sealed record Running(ConsoleRegistration Registration, CancellationTokenSource Stop, Task Task);

    public ConsoledService(ConsoledOptions options, ILoggerFactory loggers)
    {
        _options = options;
        _loggers = loggers;
        _logger = loggers.CreateLogger("XenIo.Consoled");
        _tokens = new ConsoleTokens(options.TokenFile);
        var access = new ConsoleAccess(_tokens, new AdministratorCheck(options.AdministratorGroup), options.RequireTokens,
            options.Multiplexer.AuthTimeout);
        _multiplexer = new ConsoleMultiplexer(options.Multiplexer, access, loggers.CreateLogger("XenIo.Consoled.Multiplexer"));
    }

    public ConsoleMultiplexer Multiplexer => _multiplexer;

    public ConsoleTokens Tokens => _tokens;

    public override Task StartAsync(CancellationToken cancellationToken)
    {
        if (_options.Log.Directory is { } dir)
        {
            Directory.CreateDirectory(dir);
        }
        _multiplexer.Start();
        return base.StartAsync(cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        _stopping = stoppingToken;
        try
        {
            await Task.Delay(Timeout.Infinite, stoppingToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        string[] names;
        lock (_gate) names = _consoles.Keys.ToArray();
        foreach (var name in names) await UnregisterAsync(name).ConfigureAwait(false);
        await _multiplexer.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>Registers a Xen console ring: the mapped console page and its event channel.</summary>
    public ConsoleRegistration RegisterRing(ConsoleSpec spec, nint page, IConsoleDoorbell doorbell)
    {
        var source = new RingConsoleSource(spec.Name, page, doorbell, _options.RateLimit, _logger);
        return Register(spec, source);
    }

    /// <summary>Registers an external VM's serial console served on a socket (QEMU <c>-chardev socket,server=on</c>).</summary>
    public ConsoleRegistration RegisterExternal(ConsoleSpec spec, EndPoint endPoint) =>
        Register(spec, new SocketConsoleSource(spec.Name, endPoint, _logger));

    /// <summary>Registers any console source.</summary>
    public ConsoleRegistration Register(ConsoleSpec spec, IConsoleSource source)
    {
        lock (_gate)
        {
            if (_consoles.ContainsKey(spec.Name)) throw new InvalidOperationException($"console {spec.Name} is already registered");
        }
        ConsoleLogFile? log = null;
        if (_options.Log.Directory is { } dir)
        {
            log = new ConsoleLogFile(Path.Combine(dir, ConsoleLogFile.FileNameFor(spec.Name)), _options.Log, _logger);
        }
        var hub = new ConsoleHub(spec.Name, source, spec.OutputLimit, _options.ScrollbackBytes, log, _logger)
        {
            SysrqRequested = spec.SysrqRequested,
        };
        ConsolePorts ports;
        try
        {
            ports = _multiplexer.Add(hub, spec.RawPort ?? _options.RawPorts);
        }
        catch
        {
            hub.Dispose();
            throw;
        }
        var token = _tokens.GetOrCreate(spec.Name);
        var stop = CancellationTokenSource.CreateLinkedTokenSource(_stopping);
        var registration = new ConsoleRegistration(ports, token, hub);
        var task = Task.Run(() => hub.RunAsync(stop.Token), CancellationToken.None);
        lock (_gate) _consoles.Add(spec.Name, new Running(registration, stop, task));
        _logger.LogInformation("console {Name}: telnet port {Port}{Raw}", spec.Name, ports.TelnetPort,
            ports.RawPort is { } r ? $", raw port {r}" : "");
        try
        {
            spec.PortsPublished?.Invoke(ports);
        }
        catch (Exception e)
        {
            _logger.LogError(e, "console {Name}: publishing its ports failed", spec.Name);
        }
        return registration;
    }

    public IReadOnlyList<ConsoleRegistration> Consoles
    {
        get { lock (_gate) return _consoles.Values.Select(r => r.Registration).ToArray(); }
    }

    /// <summary>Removes a console: closes its ports, disconnects its viewers, stops reading its ring. Idempotent.</summary>
    public async Task UnregisterAsync(string name)
    {
        Running? running;
        lock (_gate)
        {
            if (!_consoles.Remove(name, out running)) return;
        }
        await _multiplexer.RemoveAsync(name).ConfigureAwait(false);
        await running.Stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await running.Task.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            _logger.LogWarning("console {Name}: still stopping after 5 s", name);
        }
        running.Registration.Hub.Dispose();
        running.Stop.Dispose();
    }
}
