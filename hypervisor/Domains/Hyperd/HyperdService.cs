using System.Globalization;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using XenIo.Hypervisor.Daemons;
using XenIo.Hypervisor.Domains.Cgroups;
using XenIo.Hypervisor.Domains.Spawn;
using XenIo.Hypervisor.Interop;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;

namespace XenIo.Hypervisor.Domains.Hyperd;

public sealed class HyperdOptions
{
    public string RunDirectory { get; set; } = XenstoredOptions.DefaultRunDirectory();
    public string StateDirectory { get; set; } = "/var/lib/xenio";

    /// <summary>Prefix of kernel-global names (<c>--instance</c>).</summary>
    public string? Instance { get; set; }

    /// <summary>The page pool in MiB; 0: half the host's memory.</summary>
    public long PoolMiB { get; set; }

    public uint GrantFrames { get; set; } = 4;
}

/// <summary>
/// <c>xenio hyperd</c>: the core (memory pool, grant tables, event channels, hypercall.sock), xenstored
/// with the domain mapper, the toolstack (<see cref="DomainManager"/>) and the control API on
/// <c>&lt;run&gt;/hyperd.sock</c>. It refuses to start without root or when another hyperd holds the
/// run directory's pid file, and destroys every domain when it stops.
/// </summary>
public sealed class HyperdService(IOptions<HyperdOptions> options, ILoggerFactory loggers) : IHostedService, IAsyncDisposable
{
    private readonly HyperdOptions _options = options.Value;
    private readonly ILogger _log = loggers.CreateLogger<HyperdService>();
    private FileStream? _pidFile;
    private CoreHost? _core;
    private XenstoredService? _xenstored;
    private XenstoreClient? _dom0;
    private UnixHttpServer? _api;
    private (CgroupLayout Layout, KernelNames Names)? _kernel;

    public DomainManager? Manager { get; private set; }

    public string SocketPath => HyperdClient.SocketUnder(_options.RunDirectory);

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (Libc.GetEffectiveUserId() != 0)
            throw new InvalidOperationException("hyperd needs root (namespaces, cgroups, network namespaces): run it with sudo");
        var run = _options.RunDirectory;
        Directory.CreateDirectory(run);
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(run, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        _pidFile = LockPidFile(Path.Combine(run, "hyperd.pid"));
        try
        {
            long poolPages = (_options.PoolMiB > 0 ? _options.PoolMiB : HalfOfHostMiB()) * 256;
            _core = new CoreHost(run, poolPages, loggers.CreateLogger<CoreHost>());
            _xenstored = new XenstoredService(Options.Create(new XenstoredOptions { RunDirectory = run, StateDirectory = _options.StateDirectory }),
                loggers, new XenstoreDomainMapper(_core, loggers.CreateLogger<XenstoreDomainMapper>()));
            await _xenstored.StartAsync(cancellationToken).ConfigureAwait(false);
            _dom0 = await XenstoreClient.ConnectAsync(_xenstored.SocketPath, cancellationToken).ConfigureAwait(false);
            var logs = Path.Combine(run, "domains");
            Directory.CreateDirectory(logs);
            var names = new KernelNames(_options.Instance);
            var layout = CgroupLayout.Detect();
            _kernel = (layout, names);
            // Domains of a hyperd that died with this instance name: their memory died with it, so their processes go too.
            if (DomainLeftovers.Remove(layout, names) is { Count: > 0 } left)
                _log.LogWarning("hyperd: removed {Count} domains a previous hyperd left: {Names}", left.Count, string.Join(", ", left));
            Manager = new DomainManager(_core, _dom0, new AgentSpawner(layout, names, loggers.CreateLogger<AgentSpawner>()),
                new DomainManagerOptions
                {
                    GrantFrames = _options.GrantFrames,
                    HiddenPaths = [run, _options.StateDirectory],
                    LogDirectory = logs,
                }, loggers.CreateLogger<DomainManager>());
            var api = new HyperdApi(Manager);
            _api = new UnixHttpServer(SocketPath, api.ServeAsync, message => _log.LogWarning("{Message}", message));
            _log.LogInformation("hyperd: {Pages} pages in the pool; control API on {Socket}", poolPages, SocketPath);
        }
        catch
        {
            await StopAsync(CancellationToken.None).ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The pid file, locked for as long as this hyperd runs (flock through FileShare.None): one hyperd per run directory.</summary>
    private static FileStream LockPidFile(string path)
    {
        FileStream pid;
        try { pid = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None); }
        catch (IOException)
        {
            string other = "";
            try { other = File.ReadAllText(path).Trim(); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw new InvalidOperationException(
                $"the run directory {Path.GetDirectoryName(path)} is used by another hyperd{(other.Length > 0 ? $" (pid {other})" : "")}: stop it or use another --run-dir");
        }
        pid.SetLength(0);
        pid.Write(System.Text.Encoding.ASCII.GetBytes(Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "\n"));
        pid.Flush();
        return pid;
    }

    private static long HalfOfHostMiB()
    {
        foreach (var line in File.ReadLines("/proc/meminfo"))
            if (line.StartsWith("MemTotal:", StringComparison.Ordinal)
                && long.TryParse(line["MemTotal:".Length..].Trim().Split(' ')[0], NumberStyles.None, CultureInfo.InvariantCulture, out var kib))
                return kib / 1024 / 2;
        return 1024;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_api is not null) await _api.DisposeAsync().ConfigureAwait(false);
        _api = null;
        if (Manager is not null) await Manager.DisposeAsync().ConfigureAwait(false);
        Manager = null;
        if (_kernel is { } k) DomainLeftovers.Remove(k.Layout, k.Names);
        _kernel = null;
        if (_dom0 is not null) await _dom0.DisposeAsync().ConfigureAwait(false);
        _dom0 = null;
        if (_xenstored is not null) await _xenstored.StopAsync(cancellationToken).ConfigureAwait(false);
        _xenstored = null;
        _core?.Dispose();
        _core = null;
        if (_pidFile is not null)
        {
            File.Delete(_pidFile.Name);
            await _pidFile.DisposeAsync().ConfigureAwait(false);
        }
        _pidFile = null;
    }

    public async ValueTask DisposeAsync() => await StopAsync(CancellationToken.None).ConfigureAwait(false);
}
