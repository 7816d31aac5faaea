using XenIo.Net.Frames;

namespace XenIo.VSwitch.Core;

/// <summary>
/// A port of a <see cref="Bridge"/>: the interface every kind of port implements (TAP, internal, uplink,
/// stream, VXLAN, patch, and netback's vifs). A port hands received frames to its bridge with
/// <see cref="Deliver"/> and gets frames to send through <see cref="Transmit"/>, which the bridge calls
/// under its lock after it has decided every destination; the span is valid only during the call, so
/// a port either writes it out at once (TAP, socket, grant copy into a guest's buffer) or copies it into
/// a pooled buffer of its own. That copy is the only one a frame costs.
/// </summary>
public abstract class SwitchPort : IDisposable
{
    private PortVlan _vlan = PortVlan.Default;
    private int _mtu = 1500;
    private bool _adminUp = true;
    private RateLimiter? _egressLimit;

    protected SwitchPort(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        Name = name;
    }

    public string Name { get; }

    /// <summary>The port kind as configured: tap, internal, uplink, stream, vxlan, patch, vif.</summary>
    public abstract string Kind { get; }

    public Bridge? Bridge { get; internal set; }

    /// <summary>The port's slot in its bridge (what the forwarding database stores); -1 when detached.</summary>
    public int Index { get; internal set; } = -1;

    public PortCounters Counters { get; } = new();

    public PortVlan Vlan
    {
        get => _vlan;
        set
        {
            ArgumentNullException.ThrowIfNull(value);
            _vlan = value;
            Bridge?.OnPortChanged(this);
        }
    }

    /// <summary>
    /// Largest L3 packet (frame minus Ethernet header and tag) the port carries; 68..65535. A port whose
    /// peer has an MTU of its own (a TAP's interface) gives it the value first; if the peer refuses, the
    /// setter throws and the port keeps the MTU it had.
    /// </summary>
    public int Mtu
    {
        get => _mtu;
        set
        {
            if (value is < 68 or > 65535) throw new ArgumentOutOfRangeException(nameof(value), value, "MTU is 68..65535");
            ApplyMtu(value);
            _mtu = value;
            Bridge?.OnPortStateChanged(this);
        }
    }

    /// <summary>Gives the port's peer the MTU about to be set (called on every set, changed or not); throws to refuse it.</summary>
    protected virtual void ApplyMtu(int mtu) { }

    public bool AdminUp
    {
        get => _adminUp;
        set
        {
            _adminUp = value;
            Bridge?.OnPortStateChanged(this);
        }
    }

    /// <summary>Ports in the split-horizon group (tunnels) never forward to each other: no VXLAN-to-VXLAN.</summary>
    public virtual bool SplitHorizon => false;

    /// <summary>True when the peer takes frames whose checksum is still partial.</summary>
    public virtual bool AcceptsPartialChecksum => false;

    /// <summary>True when the peer takes 64 KiB TCP GSO frames; otherwise the bridge segments them in software.</summary>
    public virtual bool AcceptsGso => false;

    public RateLimiter? IngressLimit { get; set; }

    public RateLimiter? EgressLimit
    {
        get => _egressLimit;
        set
        {
            _egressLimit = value;
            Bridge?.OnPortStateChanged(this);
        }
    }

    /// <summary>Sends one frame. Return <see cref="DropReason.None"/> when it went out, or why it did not.</summary>
    protected internal abstract DropReason Transmit(ReadOnlySpan<byte> frame, in FrameMetadata metadata);

    /// <summary>
    /// Hands a received frame to the bridge: the frame is <c>buffer[offset .. offset + metadata.Length]</c>
    /// and at least 4 bytes before <paramref name="offset"/> are free for an 802.1Q tag. The bridge may
    /// rewrite the buffer (tag pop and push); it has finished with it when this returns.
    /// </summary>
    protected void Deliver(Span<byte> buffer, int offset, ref FrameMetadata metadata)
    {
        var bridge = Bridge;
        if (bridge is null) return;
        metadata.IngressPort = Index;
        bridge.Receive(this, buffer, offset, ref metadata);
    }

    /// <summary>Hands a batch of received frames to the bridge (one lock and clock read for all of them).</summary>
    protected void Deliver(ReadOnlySpan<PacketBuffer> batch)
    {
        var bridge = Bridge;
        if (bridge is null) return;
        bridge.Receive(this, batch);
    }

    /// <summary>Called when the port joins a bridge: start I/O here.</summary>
    protected internal virtual void OnAttached() { }

    /// <summary>Called when the port leaves its bridge: stop I/O here.</summary>
    protected internal virtual void OnDetached() { }

    public virtual void Dispose()
    {
        Bridge?.RemovePort(this);
        GC.SuppressFinalize(this);
    }

    public override string ToString() => $"{Kind}:{Name}";
}
