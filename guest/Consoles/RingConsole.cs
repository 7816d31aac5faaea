using XenIo.Guest.Init;
using XenIo.Hypervisor.Events;
using XenIo.Hypervisor.Hypercalls;
using XenIo.Hypervisor.Memory;
using XenIo.Hypervisor.Rings;

namespace XenIo.Guest.Consoles;

/// <summary>
/// The PV console frontend (Linux's hvc_xen): init's terminal on the <c>xencons_interface</c> page the
/// toolstack placed at <c>console/ring-ref</c>, with <c>console/port</c> as doorbell. What init prints
/// goes into <c>out</c>: when the ring is full the writer waits for consoled's event (it has consumed),
/// so a console nobody drains holds init up only as a full serial line would. What viewers type arrives
/// in <c>in</c> and is typed into the pty. We notify after producing output and after consuming input,
/// as hvc_xen does; consoled may notify spuriously, so every wake-up re-checks both rings.
/// </summary>
/// <remarks>
/// When consoled goes away (restart), our endpoint reaches end of file and cannot be reopened (the
/// toolstack owns the port), so the frontend falls back to polling the ring every
/// <see cref="PollInterval"/>: a restarted consoled finds the same ring and the console carries on.
/// </remarks>
public sealed unsafe class RingConsole : IConsoleFrontend
{
    /// <summary>How often the rings are checked while no event can arrive (consoled gone or restarted).</summary>
    public static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(20);

    /// <summary>Longest wait for ring space before re-checking anyway (an event may have been coalesced away).</summary>
    private const int SpaceRecheckMs = 200;

    private readonly ConsoleFrontendRing _ring;
    private readonly EventChannel _channel;
    private readonly HypercallClient? _hypercalls;
    private readonly Action<string> _log;
    private readonly SemaphoreSlim _outputSpace = new(0, 1);
    private volatile EventChannel _current;
    private long _nextReopen;

    /// <param name="page">The console page in the guest's memory, valid while the domain lives.</param>
    public RingConsole(nint page, EventChannel channel, HypercallClient? hypercalls, Action<string> log)
    {
        _ring = new ConsoleFrontendRing(page);
        _channel = _current = channel;
        _hypercalls = hypercalls;
        _log = log;
    }

    /// <summary>The console frontend of a domain hyperd set up, or null when the page is not the domain's memory.</summary>
    public static RingConsole? Open(DomainMemory memory, uint frame, uint port, int eventFd, HypercallClient? hypercalls, Action<string> log)
    {
        if (!memory.TryGetPage(frame, out var page)) return null;
        fixed (byte* p = page)
        {
            // The mapping is the domain's for its whole life; the address outlives this fixed block.
            return new RingConsole((nint)p, new EventChannel(port, eventFd), hypercalls, log);
        }
    }

    public void Run(IPtyMaster master, CancellationToken stop)
    {
        var events = new Thread(() => Events(master, stop), 128 * 1024) { IsBackground = true, Name = "console events" };
        events.Start();
        var buffer = new byte[1024];
        int n;
        while (!stop.IsCancellationRequested && (n = master.Read(buffer)) > 0)
            Produce(buffer.AsSpan(0, n), stop);
        // The pty hung up: the last output is in the ring; one more kick so consoled takes it.
        _current.Notify();
    }

    /// <summary>Puts init's output into <c>out</c>, waiting for consoled while the ring is full.</summary>
    private void Produce(ReadOnlySpan<byte> data, CancellationToken stop)
    {
        while (!data.IsEmpty && !stop.IsCancellationRequested)
        {
            int written = _ring.WriteOutput(data);
            if (written > 0)
            {
                data = data[written..];
                _current.Notify();
                continue;
            }
            // Full: the events thread releases us on consoled's kick; the timeout re-checks regardless.
            _outputSpace.Wait(_current.PeerClosed ? (int)PollInterval.TotalMilliseconds : SpaceRecheckMs, stop);
        }
    }

    /// <summary>Waits for consoled's events: types what arrived in <c>in</c> and wakes a waiting writer.</summary>
    private void Events(IPtyMaster master, CancellationToken stop)
    {
        var input = new byte[XenIo.Hypervisor.Abi.XenconsInterface.InSize];
        try
        {
            while (!stop.IsCancellationRequested)
            {
                if (_current.PeerClosed)
                {
                    TryReopen();
                    Thread.Sleep(PollInterval);
                }
                else
                {
                    _current.Wait(-1);
                }
                int n;
                while ((n = _ring.ReadInput(input)) > 0)
                {
                    // Space in `in` for consoled, as hvc_xen notifies after consuming.
                    _current.Notify();
                    master.Write(input.AsSpan(0, n));
                }
                if (_outputSpace.CurrentCount == 0)
                {
                    try { _outputSpace.Release(); }
                    catch (SemaphoreFullException) { }
                }
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or OperationCanceledException)
        {
            // The pty is gone (init ended): nothing left to type into.
        }
    }

    /// <summary>Asks for our end of the console port again, about once a second, in case hyperd lets us.</summary>
    private void TryReopen()
    {
        if (_hypercalls is null || Environment.TickCount64 < _nextReopen) return;
        bool first = _nextReopen == 0;
        _nextReopen = Environment.TickCount64 + 1000;
        try
        {
            var fresh = _hypercalls.ReopenEndpoint(_channel.Port);
            if (!ReferenceEquals(_current, _channel)) _current.Dispose();
            _current = fresh;
            // Output written while we held the dead endpoint was never signalled: ring once so the
            // new consoled looks at both rings now rather than at our next write.
            fresh.Notify();
            _log("console: consoled went away; event channel reopened");
            _nextReopen = 0;
        }
        catch (Exception e) when (e is HypercallException or IOException or InvalidDataException)
        {
            if (first) _log($"console: consoled went away; polling the console ring ({e.Message})");
        }
    }
}
