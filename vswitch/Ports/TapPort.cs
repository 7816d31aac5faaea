using XenIo.Net.Frames;
using XenIo.Net.Tap;
using XenIo.VSwitch.Core;

namespace XenIo.VSwitch.Ports;

/// <summary>
/// A host TAP device as a switch port. With offloads on, 64 KiB GSO frames and partial checksums come
/// in with their virtio-net header and go out the same way to other offload-capable ports, unsegmented,
/// which is how a user-space switch reaches the kernel bridge's tier (LINUX-NOTES). Reads happen on an
/// <see cref="EpollLoop"/> thread in batches (everything the TAP has queued, up to <see cref="BatchSize"/>
/// frames per bridge call); writes are one non-blocking writev straight from the sender's buffer.
/// </summary>
public class TapPort : SwitchPort, IReadinessHandler
{
    public const int BatchSize = 8;
    private const int EAGAIN = 11;
    private const int EIO = 5;
    private readonly TapDevice _tap;
    private readonly EpollLoop _loop;
    private readonly PacketBuffer[] _batch = new PacketBuffer[BatchSize];
    private readonly byte[] _rxHeader = new byte[VirtioNetHeader.Size];
    private readonly byte[] _txHeader = new byte[VirtioNetHeader.Size];
    private bool _registered;
    private int _interfaceMtu; // what this port last gave the interface; 0 before it gave any

    /// <summary>Takes ownership of <paramref name="tap"/>; the port's name is the interface's.</summary>
    public TapPort(TapDevice tap, EpollLoop loop) : this(tap.Name, tap, loop)
    {
    }

    protected TapPort(string name, TapDevice tap, EpollLoop loop) : base(name)
    {
        _tap = tap;
        _loop = loop;
        for (var i = 0; i < BatchSize; i++) _batch[i] = new PacketBuffer(EtherTypes.MaxFrameLength, null);
    }

    public override string Kind => "tap";
    public TapDevice Device => _tap;
    public override bool AcceptsGso => _tap.Offloads;
    public override bool AcceptsPartialChecksum => _tap.Offloads;

    /// <summary>GSO frames received (they cross as one frame each; a test can see they were not segmented).</summary>
    public long GsoFramesReceived { get; private set; }

    /// <summary>The interface gets the port's MTU when the port is configured and whenever it changes (not again on every apply).</summary>
    protected override void ApplyMtu(int mtu)
    {
        if (mtu == _interfaceMtu) return;
        _tap.SetMtu(mtu);
        _interfaceMtu = mtu;
    }

    protected internal override void OnAttached()
    {
        _loop.Add(_tap.Fd, this);
        _registered = true;
    }

    protected internal override void OnDetached()
    {
        if (_registered) _loop.Remove(_tap.Fd);
        _registered = false;
    }

    public void OnReadable()
    {
        while (true)
        {
            var count = 0;
            var drained = false;
            while (count < BatchSize)
            {
                var buffer = _batch[count];
                var n = _tap.Read(_rxHeader, buffer.Data.AsSpan(PacketBuffer.Headroom));
                if (n < 0)
                {
                    drained = true;
                    if (n != -EAGAIN) Fail(n);
                    break;
                }
                VirtioNetHeader.TryRead(_rxHeader, out var header);
                if (!header.TryToMetadata(n, Index, out var metadata))
                {
                    Counters.CountDrop(DropReason.Malformed);
                    continue;
                }
                if (metadata.IsGso) GsoFramesReceived++;
                buffer.SetFrame(PacketBuffer.Headroom, n);
                buffer.Metadata = metadata;
                count++;
            }
            if (count > 0) Deliver(_batch.AsSpan(0, count));
            if (drained) return;
        }
    }

    /// <summary>Raised once, on the loop thread, when the TAP stops working (its interface was destroyed).</summary>
    public event Action<string>? Log;

    /// <summary>
    /// A read error other than EAGAIN (the interface was deleted with its namespace, say) would wake the
    /// level-triggered loop forever: stop polling this TAP and say so once.
    /// </summary>
    private void Fail(int errno)
    {
        if (!_registered) return;
        _registered = false;
        _loop.Remove(_tap.Fd);
        Log?.Invoke($"tap port {Name}: read failed with errno {-errno}; port stopped");
    }

    protected internal override DropReason Transmit(ReadOnlySpan<byte> frame, in FrameMetadata metadata)
    {
        var header = VirtioNetHeader.FromMetadata(metadata);
        header.Write(_txHeader);
        var n = _tap.Write(_txHeader, frame);
        if (n >= 0) return DropReason.None;
        // A TAP whose interface is down refuses writes with EIO: no peer yet, not a failure.
        return n switch { -EAGAIN => DropReason.QueueFull, -EIO => DropReason.LinkDown, _ => DropReason.TxError };
    }

    public override void Dispose()
    {
        base.Dispose();
        _tap.Dispose();
    }
}

/// <summary>
/// The host's own interface on a bridge (Open vSwitch's "internal" port): a TAP left in the host's
/// namespace, through which the host stack itself talks to the bridge's network.
/// </summary>
public sealed class InternalPort(TapDevice tap, EpollLoop loop) : TapPort(tap.Name, tap, loop)
{
    public override string Kind => "internal";
}
