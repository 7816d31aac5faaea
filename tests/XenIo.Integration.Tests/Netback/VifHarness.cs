using System.Collections.Concurrent;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Domains.Cgroups;
using XenIo.Hypervisor.Domains.Hyperd;
using XenIo.Hypervisor.Domains.Spawn;
using XenIo.Hypervisor.Hypercalls;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;
using XenIo.Hypervisor.Store.Transports;
using XenIo.Netback.Vif;
using XenIo.Netback.Xenbus;
using XenIo.TestPeer.Netback;
using XenIo.VSwitch.Core;

namespace XenIo.Integration.Tests.Netback;

/// <summary>
/// hyperd's core and toolstack in process (agent-less domains with vifs), xenstored, a bridge, and
/// netback's vif backend service over them; the tests play each guest's netfront with
/// <see cref="TestNetfront"/> and write its xenbus keys as netfront would. Started with
/// <see cref="GuestAgents"/>, the toolstack also runs real guests (the agent with its netfront).
/// </summary>
public sealed class VifHarness : IAsyncDisposable
{
    public static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "xenio-vif-" + Guid.NewGuid().ToString("N")[..10]);
    private readonly List<GuestDomain> _guests = [];
    private readonly List<TestNetfront> _fronts = [];
    private CancellationTokenSource _stop = new();
    private Task? _service;
    private Func<string, Bridge?>? _findBridge;

    public CoreHost Host { get; }
    public Xenstored Daemon { get; }
    public XenstoreSocketListener Listener { get; }
    public XenstoreClient Dom0 { get; private set; } = null!;
    public DomainManager Manager { get; private set; } = null!;
    public Bridge Bridge { get; } = new("xenbr0");
    public VifBackendService Vifs { get; private set; } = null!;
    private XenstoreClient _netbackStore = null!;
    public ConcurrentQueue<string> Log { get; } = new();

    public VifHarness()
    {
        Host = new CoreHost(_dir, budgetPages: 1L << 16);
        Daemon = new Xenstored(mapper: new XenstoreDomainMapper(Host));
        Listener = new XenstoreSocketListener(Daemon, XenstoreSocketListener.PathUnder(_dir));
    }

    /// <summary>The run directory: hypercall.sock and xenstored/socket, as a netback daemon expects them.</summary>
    public string Dir => _dir;

    /// <summary>Real guests' agent and kernel names, for a harness whose toolstack starts agents.</summary>
    public sealed record GuestAgents(string Agent, KernelNames Names);

    /// <param name="inProcessNetback">False when the test runs netback itself (the daemon, in its own process).</param>
    /// <param name="findBridge">Where vifs look up their bridge (a reconciler's bridges); by default <see cref="Bridge"/> alone.</param>
    /// <param name="guests">When set, <see cref="DomainManager.CreateAsync"/> starts each domain's agent (and
    /// <see cref="DomainManager.CreateAgentlessAsync"/> still makes domains for <see cref="CreateGuestAsync"/>).</param>
    public static async Task<VifHarness> StartAsync(int maxQueues = 4, bool inProcessNetback = true, GuestAgents? guests = null,
        Func<string, Bridge?>? findBridge = null)
    {
        var h = new VifHarness { _findBridge = findBridge };
        h.Dom0 = await XenstoreClient.ConnectAsync(h.Listener.SocketPath);
        h.Manager = guests is null
            ? new DomainManager(h.Host, h.Dom0, spawner: null)
            : new DomainManager(h.Host, h.Dom0, new AgentSpawner(CgroupLayout.Detect(), guests.Names), new DomainManagerOptions
            {
                AgentCommand = [guests.Agent],
                HiddenPaths = [h.Dir],
                LogDirectory = h.Dir,
                StopTimeoutMs = 2000,
            });
        if (inProcessNetback) await h.StartNetbackAsync(maxQueues);
        return h;
    }

    /// <summary>What the real guests' agents logged (one file per guest in the run directory).</summary>
    public string GuestLogs() => string.Join("\n", Directory.EnumerateFiles(_dir, "*.log").Select(f =>
    {
        try { return $"== {Path.GetFileName(f)}\n{File.ReadAllText(f)}"; }
        catch (IOException) { return ""; }
    }));

    /// <summary>Starts (again) netback's vif service on its own xenstore connection, as a restarted daemon would.</summary>
    public async Task StartNetbackAsync(int maxQueues = 4)
    {
        _netbackStore = await XenstoreClient.ConnectAsync(Listener.SocketPath);
        Vifs = new VifBackendService(_netbackStore, () => HypercallClient.Connect(Host.HypercallSocketPath),
            _findBridge ?? (name => name == Bridge.Name ? Bridge : null), m => Log.Enqueue(m), maxQueues);
        _stop = new CancellationTokenSource();
        var vifs = Vifs;
        var token = _stop.Token;
        _service = Task.Run(() => vifs.RunAsync(token));
    }

    /// <summary>Stops the vif service the way a killed netback stops: nothing is written to xenstore on the way out.</summary>
    public async Task StopNetbackAsync()
    {
        if (_service is null) return;
        await _stop.CancelAsync();
        try { await _service!; }
        catch (OperationCanceledException) { }
        await Vifs.DisposeAsync();
        await _netbackStore.DisposeAsync();
    }

    public async Task<(DomainRecord Record, GuestDomain Guest)> CreateGuestAsync(string name, string mac, string? ip = null, string? rate = null,
        string bridge = "xenbr0")
    {
        var vif = new Hypervisor.Domains.VifConfig { Devid = 0, Mac = mac, Ip = ip, Bridge = bridge };
        if (rate is not null)
        {
            var parts = rate.Split(',');
            vif = vif with { Rate = new VifRate(ulong.Parse(parts[0]), uint.Parse(parts[1])) };
        }
        var record = await Manager.CreateAgentlessAsync(new DomainConfig { Name = name, MemoryMiB = 8, Vcpus = 1, Vifs = [vif] });
        var memory = record.Hosted.Memory.Duplicate();
        var hypercall = record.Hosted.TakeGuestEnd();
        int memFd = (int)memory.DangerousGetHandle(), hcFd = (int)hypercall.DangerousGetHandle();
        memory.SetHandleAsInvalid();
        hypercall.SetHandleAsInvalid();
        var guest = GuestDomain.Attach(memFd, hcFd);
        _guests.Add(guest);
        return (record, guest);
    }

    public TestNetfront Frontend(DomainRecord record, GuestDomain guest, bool split)
    {
        var front = new TestNetfront(guest, split, Math.Max(record.StoreFrame, record.ConsoleFrame) + 1);
        _fronts.Add(front);
        return front;
    }

    public static string BackendPath(int domid, int devid = 0) => $"/local/domain/0/backend/vif/{domid}/{devid}";
    public static string FrontendPath(int domid, int devid = 0) => $"/local/domain/{domid}/device/vif/{devid}";

    public async Task WaitBackendStateAsync(int domid, int state, int devid = 0)
    {
        var deadline = DateTime.UtcNow + Limit;
        while (await Dom0.TryReadAsync($"{BackendPath(domid, devid)}/state") != state.ToString())
        {
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"backend vif {domid}/{devid} never reached state {state} (is {await Dom0.TryReadAsync($"{BackendPath(domid, devid)}/state")}); log:\n{string.Join('\n', Log)}");
            await Task.Delay(10);
        }
    }

    /// <summary>netfront's side of the handshake: wait for InitWait, publish keys, go Connected, wait for the backend.</summary>
    public async Task ConnectAsync(TestNetfront front, IReadOnlyDictionary<string, string>? keys = null, int devid = 0)
    {
        await WaitBackendStateAsync(front.Domid, 2, devid);
        var fe = FrontendPath(front.Domid, devid);
        // One transaction, as netfront's talk_to_netback does: the backend never sees half a set of keys.
        await Dom0.TransactAsync(async tx =>
        {
            foreach (var (k, v) in keys ?? front.FrontendKeys()) await Dom0.WriteAsync($"{fe}/{k}", v, tx);
        });
        await Dom0.WriteAsync($"{fe}/state", "4");
        await WaitBackendStateAsync(front.Domid, 4, devid);
    }

    /// <summary>The vif's port, as soon as the service lists it (its snapshot follows its xenstore writes).</summary>
    public VifPort Port(int domid, int devid = 0)
    {
        var deadline = DateTime.UtcNow + Limit;
        while (true)
        {
            if (Vifs.Vifs.FirstOrDefault(v => v.Domid == domid && v.Devid == devid)?.Port is { } port) return port;
            if (DateTime.UtcNow > deadline) throw new InvalidOperationException($"no vif {domid}/{devid}; log:\n{string.Join('\n', Log)}");
            Thread.Sleep(5);
        }
    }

    public async ValueTask DisposeAsync()
    {
        try { await StopNetbackAsync(); }
        catch (Exception) { }
        foreach (var f in _fronts) f.Dispose();
        foreach (var g in _guests) g.Dispose();
        await Manager.DisposeAsync();
        await Dom0.DisposeAsync();
        await Listener.DisposeAsync();
        Host.Dispose();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
