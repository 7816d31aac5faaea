using Microsoft.Extensions.Logging.Abstractions;
using XenIo.Consoled;
using XenIo.Consoled.Rings;

namespace XenIo.Tests;

/// <summary>
/// consoled started in-process with raw ports and no rate limit, logging into
/// <paramref name="logDirectory"/> (deleted on dispose); consoles come from guests whose rings live in
/// this process. Shared by the console tests, the integration tests and the console benchmarks.
/// </summary>
public class LocalConsoled : IAsyncDisposable
{
    private readonly List<LocalConsoleFrontend> _guests = [];

    public LocalConsoled(string logDirectory, Action<ConsoledOptions>? configure = null)
    {
        LogDirectory = logDirectory;
        Directory.CreateDirectory(logDirectory);
        Options = new ConsoledOptions { RawPorts = true, RateLimit = RateLimit.Unlimited };
        Options.Log.Directory = LogDirectory;
        configure?.Invoke(Options);
        Service = new ConsoledService(Options, NullLoggerFactory.Instance);
        Service.StartAsync(CancellationToken.None).GetAwaiter().GetResult();
    }

    public string LogDirectory { get; }

    public ConsoledOptions Options { get; }

    public ConsoledService Service { get; }

    public (LocalConsoleFrontend Guest, ConsoleRegistration Registration) AddGuest(string name, Action<ConsoleSpec>? configure = null)
    {
        var guest = new LocalConsoleFrontend();
        _guests.Add(guest);
        var spec = new ConsoleSpec(name);
        configure?.Invoke(spec);
        return (guest, Service.RegisterRing(spec, guest.Page, guest.BackendDoorbell));
    }

    public async ValueTask DisposeAsync()
    {
        await Service.StopAsync(CancellationToken.None);
        Service.Dispose();
        foreach (var g in _guests) await g.DisposeAsync();
        Directory.Delete(LogDirectory, recursive: true);
        GC.SuppressFinalize(this);
    }
}
