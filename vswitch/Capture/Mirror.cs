using XenIo.Net.Frames;
using XenIo.VSwitch.Core;

namespace XenIo.VSwitch.Capture;

/// <summary>What a mirror takes: which ports (none named = every port), which directions, which VLANs.</summary>
public sealed record MirrorSelection(IReadOnlySet<string>? Ports = null, CaptureDirection Directions = CaptureDirection.Ingress | CaptureDirection.Egress, VlanSet? Vlans = null)
{
    public static readonly MirrorSelection Everything = new();
}

/// <summary>
/// A SPAN mirror: records frames crossing chosen ports, directions and VLANs of a bridge into a capture
/// sink, each as seen on the port (tagged on trunks, untagged on access ports; a GSO frame is one
/// record, as tcpdump on a TAP shows it), after an optional tcpdump filter, cut at the snaplen. Runs
/// under the bridge's lock on the forwarding path, so it allocates nothing per frame and its sink must
/// not block (<see cref="FileCaptureSink"/> and netback's API queue in memory). Add it with
/// <see cref="Attach"/>; dispose it to stop and flush.
/// </summary>
public sealed class Mirror : IFrameObserver, IDisposable
{
    private readonly ICaptureSink _sink;
    private readonly BpfFilter? _filter;
    private readonly CaptureClock _clock;
    private Bridge? _bridge;
    private long _captured;
    private long _filteredOut;
    private long _failed;

    public Mirror(string name, ICaptureSink sink, MirrorSelection? selection = null, int snaplen = PcapWriter.DefaultSnaplen, string? filter = null, CaptureClock? clock = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(sink);
        if (snaplen <= 0) throw new ArgumentOutOfRangeException(nameof(snaplen));
        Name = name;
        _sink = sink;
        Selection = selection ?? MirrorSelection.Everything;
        Snaplen = snaplen;
        _filter = string.IsNullOrWhiteSpace(filter) ? null : BpfFilter.Compile(filter);
        _clock = clock ?? CaptureClock.Realtime;
    }

    public string Name { get; }
    public MirrorSelection Selection { get; }
    public int Snaplen { get; }
    public string? Filter => _filter?.Expression;
    public long Captured => Volatile.Read(ref _captured);
    public long FilteredOut => Volatile.Read(ref _filteredOut);
    /// <summary>Frames the sink failed to take (an exception from it, which never reaches the forwarding path).</summary>
    public long Failed => Volatile.Read(ref _failed);

    public void Attach(Bridge bridge)
    {
        if (_bridge is not null) throw new InvalidOperationException($"mirror {Name} is already attached");
        _bridge = bridge;
        bridge.AddObserver(this);
    }

    public void Observe(SwitchPort port, CaptureDirection direction, int vlan, ReadOnlySpan<byte> frame, in FrameMetadata metadata)
    {
        if ((Selection.Directions & direction) == 0) return;
        if (Selection.Ports is { } ports && !ports.Contains(port.Name)) return;
        if (Selection.Vlans is { } vlans && !vlans.Contains(vlan)) return;
        if (_filter is not null && !_filter.Matches(frame))
        {
            _filteredOut++;
            return;
        }
        try
        {
            _sink.Write(port, direction, _clock.UnixNanoseconds(), frame[..Math.Min(frame.Length, Snaplen)], frame.Length);
        }
        catch (Exception)
        {
            // The sinks here queue in memory and do not throw; should one fail, the frame it was
            // recording is still forwarded (this runs on the forwarding path) and the failure is counted.
            _failed++;
            return;
        }
        _captured++;
    }

    public void Flush() => _sink.Flush();

    public void Dispose()
    {
        _bridge?.RemoveObserver(this);
        _bridge = null;
        _sink.Dispose();
        _filter?.Dispose();
    }
}
