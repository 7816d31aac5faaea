using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using XenIo.Consoled.Domains;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Domains.Hyperd;
using XenIo.Hypervisor.Events;
using XenIo.Hypervisor.Hypercalls;
using XenIo.Hypervisor.Rings;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;
using XenIo.Hypervisor.Store.Transports;
using Xunit;

namespace XenIo.Consoled.Tests;

/// <summary>
/// consoled's domain wiring against hyperd's core and xenstored in-process, with domains that have no
/// agent: the test plays the guest on the console page and port the toolstack set up.
/// </summary>
public sealed class DomainConsoleTests : IAsyncLifetime
{
    private readonly string _dir = Directory.CreateTempSubdirectory("xenio-domcon").FullName;
    private CoreHost _host = null!;
    private XenstoreSocketListener _listener = null!;
    private XenstoreClient _dom0 = null!;
    private XenstoreClient _consoledStore = null!;
    private HypercallClient _hypercalls = null!;
    private DomainManager _manager = null!;
    private Harness _consoled = null!;
    private XenDomainConsoles _domains = null!;
    private readonly CancellationTokenSource _stop = new();
    private Task _serving = Task.CompletedTask;

    public async Task InitializeAsync()
    {
        _host = new CoreHost(_dir, budgetPages: 32L * 256);
        _listener = new XenstoreSocketListener(new Xenstored(mapper: new XenstoreDomainMapper(_host)), XenstoreSocketListener.PathUnder(_dir));
        _dom0 = await XenstoreClient.ConnectAsync(_listener.SocketPath);
        _consoledStore = await XenstoreClient.ConnectAsync(_listener.SocketPath);
        _hypercalls = HypercallClient.Connect(_host.HypercallSocketPath);
        _manager = new DomainManager(_host, _dom0, spawner: null);
        _consoled = new Harness();
    }

    private void StartConsoled()
    {
        _domains = new XenDomainConsoles(_consoled.Service, _consoledStore, _hypercalls, NullLogger.Instance);
        _serving = Task.Run(() => _domains.RunAsync(_stop.Token));
    }

    private Task<DomainRecord> CreateAsync(string name) =>
        _manager.CreateAsync(new DomainConfig { Name = name, MemoryMiB = 4, Init = ["/bin/true"] });

    private async Task<DomainConsole> WaitForConsoleAsync(string name)
    {
        for (int i = 0; i < 400; i++)
        {
            if (_domains.Find(name) is { } c) return c;
            await Task.Delay(25);
        }
        throw new TimeoutException($"no console for {name}");
    }

    [Fact]
    public async Task A_domain_console_is_served_published_and_closed_with_the_domain()
    {
        var domain = await CreateAsync("web");
        StartConsoled();
        var console = await WaitForConsoleAsync("web");
        Assert.Equal(console, _domains.Find(domain.Domid.ToString(CultureInfo.InvariantCulture)));
        var key = $"/local/domain/{domain.Domid}/{XenDomainConsoles.TelnetPortKey}";
        string? published = null;
        for (int i = 0; i < 200 && published is null; i++)
        {
            published = await _dom0.TryReadAsync(key);
            if (published is null) await Task.Delay(25);
        }
        Assert.Equal(console.Ports.TelnetPort.ToString(CultureInfo.InvariantCulture), published);
        Assert.Equal([new XenstorePermission(0, XenstoreAccess.None), new XenstorePermission(domain.Domid, XenstoreAccess.Read)],
            (await _dom0.GetPermsAsync(key)).Select(p => new XenstorePermission(p.DomId, p.Access & XenstoreAccess.Both)));

        // The test is the guest: its console page and its end of the console port.
        var ring = new ConsoleFrontendRing(PageAddress(domain));
        using var guestPort = new EventChannel(domain.ConsolePort, (int)domain.ConsoleEndpoint!.DangerousGetHandle());
        domain.ConsoleEndpoint.SetHandleAsInvalid(); // the channel owns the descriptor now
        await using var viewer = await RawClient.ConnectAsync(console.Ports.RawPort!.Value);
        Assert.Equal(15, ring.WriteOutput("guest says hi\r\n"u8));
        guestPort.Notify();
        await viewer.WaitForAsync("guest says hi");
        await viewer.SendAsync("ls\r"u8.ToArray());
        var input = new byte[16];
        int n = 0;
        for (int i = 0; i < 400 && n == 0; i++)
        {
            guestPort.Wait(25);
            n = ring.ReadInput(input);
        }
        Assert.Equal("ls\r", Encoding.ASCII.GetString(input, 0, n));

        await _manager.DestroyAsync(domain);
        await viewer.WaitClosedAsync();
        for (int i = 0; i < 400 && _domains.Find("web") is not null; i++) await Task.Delay(25);
        Assert.Null(_domains.Find("web"));
        Assert.Contains("guest says hi", File.ReadAllText(Path.Combine(_consoled.LogDirectory, "guest-web.log")));
    }

    private static unsafe nint PageAddress(DomainRecord domain)
    {
        var page = domain.Hosted.Memory.Page(domain.ConsoleFrame);
        fixed (byte* p = page) return (nint)p;
    }

    [Fact]
    public async Task Bad_console_keys_leave_that_domain_without_a_console_and_the_others_served()
    {
        var badRef = await CreateAsync("badref");
        var badPort = await CreateAsync("badport");
        var badName = await CreateAsync("badname");
        var good = await CreateAsync("good");
        await _dom0.WriteAsync($"/local/domain/{badRef.Domid}/console/ring-ref", "4294967295");
        await _dom0.WriteAsync($"/local/domain/{badPort.Domid}/console/port", "99; rm -rf /");
        await _dom0.WriteAsync($"/local/domain/{badName.Domid}/name", "../../etc/passwd");
        await _dom0.WriteAsync($"/local/domain/{good.Domid}/console/limit", "-5");
        StartConsoled();
        await WaitForConsoleAsync("good");
        var renamed = await WaitForConsoleAsync($"domain-{badName.Domid}");
        Assert.Equal(badName.Domid, renamed.Domid);
        Assert.Null(_domains.Find("badref"));
        Assert.Null(_domains.Find("badport"));
        Assert.False(_serving.IsCompleted);
        Assert.DoesNotContain(Directory.GetFiles(_consoled.LogDirectory), f => f.Contains("passwd", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_domain_created_after_consoled_started_is_picked_up()
    {
        StartConsoled();
        await Task.Delay(100);
        var late = await CreateAsync("late");
        var console = await WaitForConsoleAsync("late");
        Assert.Equal(late.Domid, console.Domid);
    }

    public async Task DisposeAsync()
    {
        await _stop.CancelAsync();
        try { await _serving; }
        catch (OperationCanceledException) { }
        if (_domains is not null) await _domains.DisposeAsync();
        await _manager.DisposeAsync();
        await _consoled.DisposeAsync();
        _hypercalls.Dispose();
        await _consoledStore.DisposeAsync();
        await _dom0.DisposeAsync();
        await _listener.DisposeAsync();
        _host.Dispose();
        Directory.Delete(_dir, true);
    }
}
