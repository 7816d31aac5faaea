using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;
using Pipelines.Sockets.Unofficial;

namespace XenIo.Consoled.Viewers;

/// <summary>Settings of the telnet multiplexer.</summary>
public sealed class MultiplexerOptions
{
    /// <summary>Address every console port binds; anything but loopback makes tokens mandatory.</summary>
    public IPAddress ListenAddress { get; set; } = IPAddress.Loopback;

    /// <summary>First port tried for consoles; 0 takes any free port.</summary>
    public int PortBase { get; set; }

    /// <summary>Port of the directory listing; 0 takes any free port, -1 serves none.</summary>
    public int DirectoryPort { get; set; }

    public int ViewerQueueBytes { get; set; } = Buffers.ViewerQueue.DefaultCapacity;

    public int MaxViewersPerConsole { get; set; } = 64;

    public TimeSpan AuthTimeout { get; set; } = TimeSpan.FromSeconds(30);
}

/// <summary>
/// Serves consoles over TCP: one port per console (telnet, plus an optional raw one for socat/nc) and
/// a directory port that prints every console's name and ports, then closes. Each connection becomes
/// a <see cref="Viewer"/> of its console's <see cref="ConsoleHub"/>.
/// </summary>
public sealed class ConsoleMultiplexer : IAsyncDisposable
{
    private readonly object _gate = new();
    private readonly Dictionary<string, Entry> _consoles = new(StringComparer.Ordinal);
    private readonly HashSet<Task> _connections = [];
    private readonly Dictionary<ConsoleHub, int> _perConsole = [];
    private readonly MultiplexerOptions _options;
    private readonly ConsoleAccess _access;
    private readonly ILogger _logger;
    private readonly PipeOptions _pipeOptions = new(pauseWriterThreshold: 64 * 1024, resumeWriterThreshold: 32 * 1024);
    private TcpListenerPort? _directory;

    private sealed record Entry(ConsoleHub Hub, TcpListenerPort Telnet, TcpListenerPort? Raw)
    {
        public ConsolePorts Ports => new(Hub.Name, Telnet.Port, Raw?.Port);
    }

    public ConsoleMultiplexer(MultiplexerOptions options, ConsoleAccess access, ILogger logger)
    {
        _options = options;
        _access = access;
        _logger = logger;
    }

    /// <summary>The directory port in use, or 0 when none is served.</summary>
    public int DirectoryPort => _directory?.Port ?? 0;

    public int ConnectionCount
    {
        get { lock (_gate) return _connections.Count; }
    }

    public void Start()
    {
        if (_options.DirectoryPort < 0 || _directory is not null) return;
        _directory = TcpListenerPort.Bind(_options.ListenAddress, _options.DirectoryPort, UsedPorts(), ServeDirectoryAsync, _logger);
        _logger.LogInformation("console directory on {EndPoint}", _directory.EndPoint);
    }

    public IReadOnlyList<ConsolePorts> List()
    {
        lock (_gate) return _consoles.Values.Select(e => e.Ports).OrderBy(p => p.Name, StringComparer.Ordinal).ToArray();
    }

    public ConsolePorts? Find(string name)
    {
        lock (_gate) return _consoles.TryGetValue(name, out var e) ? e.Ports : null;
    }

    private HashSet<int> UsedPorts()
    {
        lock (_gate)
        {
            var used = new HashSet<int>();
            if (_directory is not null) used.Add(_directory.Port);
            foreach (var e in _consoles.Values)
            {
                used.Add(e.Telnet.Port);
                if (e.Raw is not null) used.Add(e.Raw.Port);
            }
            return used;
        }
    }

    /// <summary>Opens the console's ports; returns them so the caller can publish them.</summary>
    public ConsolePorts Add(ConsoleHub hub, bool raw)
    {
        lock (_gate)
        {
            if (_consoles.ContainsKey(hub.Name)) throw new InvalidOperationException($"console {hub.Name} already exists");
        }
        var used = UsedPorts();
        var telnet = TcpListenerPort.Bind(_options.ListenAddress, _options.PortBase, used,
            (s, ct) => ServeViewerAsync(hub, s, ViewerMode.Telnet, ct), _logger);
        TcpListenerPort? rawPort = null;
        if (raw)
        {
            used.Add(telnet.Port);
            rawPort = TcpListenerPort.Bind(_options.ListenAddress, _options.PortBase, used,
                (s, ct) => ServeViewerAsync(hub, s, ViewerMode.Raw, ct), _logger);
        }
        var entry = new Entry(hub, telnet, rawPort);
        lock (_gate) _consoles.Add(hub.Name, entry);
        return entry.Ports;
    }

    /// <summary>Closes the console's ports and disconnects its viewers.</summary>
    public async Task RemoveAsync(string name)
    {
        Entry? entry;
        lock (_gate)
        {
            if (!_consoles.Remove(name, out entry)) return;
        }
        await entry.Telnet.DisposeAsync().ConfigureAwait(false);
        if (entry.Raw is not null) await entry.Raw.DisposeAsync().ConfigureAwait(false);
        entry.Hub.TakeViewers();
    }

    /// <summary>
    /// Serves a client consoled's API socket has let in (<c>xenio console</c>) as a raw viewer of
    /// <paramref name="name"/>; false when there is no such console.
    /// </summary>
    public bool AttachLocal(string name, Socket socket, LocalAttach attach, CancellationToken cancellationToken)
    {
        ConsoleHub hub;
        lock (_gate)
        {
            if (!_consoles.TryGetValue(name, out var entry)) return false;
            hub = entry.Hub;
        }
        _ = ServeViewerAsync(hub, socket, ViewerMode.Raw, cancellationToken, attach);
        return true;
    }

    private Task ServeViewerAsync(ConsoleHub hub, Socket socket, ViewerMode mode, CancellationToken cancellationToken, LocalAttach? local = null)
    {
        // Connections still giving their token count too: each holds a viewer's buffers.
        bool admitted;
        lock (_gate)
        {
            _perConsole.TryGetValue(hub, out int count);
            admitted = count < _options.MaxViewersPerConsole;
            if (admitted) _perConsole[hub] = count + 1;
        }
        if (!admitted)
        {
            _logger.LogWarning("console {Name}: too many viewers, refusing {Remote}", hub.Name, socket.RemoteEndPoint);
            try
            {
                socket.Send("\r\n[xenio: too many viewers]\r\n"u8, SocketFlags.None);
            }
            catch (SocketException)
            {
            }
            socket.Dispose();
            return Task.CompletedTask;
        }
        if (socket.AddressFamily != AddressFamily.Unix) SocketConnection.SetRecommendedServerOptions(socket);
        var connection = SocketConnection.Create(socket, _pipeOptions, _pipeOptions);
        var viewer = new Viewer(hub, connection, mode, _access, _options.ViewerQueueBytes, _logger, local);
        var task = viewer.RunAsync(cancellationToken);
        Track(task, hub);
        return task;
    }

    private void Track(Task task, ConsoleHub hub)
    {
        lock (_gate) _connections.Add(task);
        task.ContinueWith(t =>
        {
            lock (_gate)
            {
                _connections.Remove(t);
                if (_perConsole.TryGetValue(hub, out int count) && count > 1) _perConsole[hub] = count - 1;
                else _perConsole.Remove(hub);
            }
        }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    private async Task ServeDirectoryAsync(Socket socket, CancellationToken cancellationToken)
    {
        using (socket)
        {
            var text = new StringBuilder();
            foreach (var p in List())
            {
                text.Append(p.Name).Append(" telnet ").Append(p.TelnetPort);
                if (p.RawPort is { } r) text.Append(" raw ").Append(r);
                text.Append("\r\n");
            }
            try
            {
                await socket.SendAsync(Encoding.UTF8.GetBytes(text.ToString()), SocketFlags.None, cancellationToken).ConfigureAwait(false);
                socket.Shutdown(SocketShutdown.Both);
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException)
            {
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_directory is not null) await _directory.DisposeAsync().ConfigureAwait(false);
        string[] names;
        lock (_gate) names = _consoles.Keys.ToArray();
        foreach (var name in names) await RemoveAsync(name).ConfigureAwait(false);
        Task[] running;
        lock (_gate) running = _connections.ToArray();
        try
        {
            await Task.WhenAll(running).WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            _logger.LogWarning("{Count} console connections still closing at shutdown", running.Length);
        }
    }
}
