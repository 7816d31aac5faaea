using System.Buffers.Binary;
using XenIo.Net.Frames;
using XenIo.Net.Tap;
using XenIo.VSwitch.Core;
using XenIo.VSwitch.Interop;

namespace XenIo.VSwitch.Ports;

/// <summary>
/// An existing host interface bridged into the switch, like Xen's xenbr0 on eth0: an AF_PACKET socket
/// bound to the interface, promiscuous, not seeing its own transmissions (PACKET_IGNORE_OUTGOING), with
/// PACKET_VNET_HDR so GSO frames and partial checksums cross in both directions with a 10-byte
/// virtio_net_hdr instead of being segmented. Reads run on an <see cref="EpollLoop"/> in batches.
/// </summary>
public sealed unsafe class UplinkPort : SwitchPort, IReadinessHandler
{
    private const int VnetHeaderSize = 10;
    private const int BatchSize = 8;
    private readonly EpollLoop _loop;
    private readonly PacketBuffer[] _batch = new PacketBuffer[BatchSize];
    private readonly byte[] _rxHeader = new byte[VirtioNetHeader.Size];
    private readonly byte[] _txHeader = new byte[VirtioNetHeader.Size];
    private int _fd;
    private bool _registered;

    public UplinkPort(string interfaceName, EpollLoop loop) : base(interfaceName)
    {
        _loop = loop;
        var ifindex = (int)Libc.IfNameToIndex(interfaceName);
        if (ifindex == 0) throw new IOException($"no interface {interfaceName}");
        IfIndex = ifindex;
        var protocol = BinaryPrimitives.ReverseEndianness(Libc.ETH_P_ALL);
        _fd = Libc.Socket(Libc.AF_PACKET, Libc.SOCK_RAW | Libc.SOCK_NONBLOCK | Libc.SOCK_CLOEXEC, protocol);
        if (_fd < 0) throw new IOException($"socket(AF_PACKET): errno {Libc.Errno}");
        try
        {
            var one = 1;
            if (Libc.SetSockOpt(_fd, Libc.SOL_PACKET, Libc.PACKET_VNET_HDR, &one, sizeof(int)) < 0) throw new IOException($"PACKET_VNET_HDR: errno {Libc.Errno}");
            // Best effort: kernels before 4.20 lack it, and then we would see our own frames come back.
            Libc.SetSockOpt(_fd, Libc.SOL_PACKET, Libc.PACKET_IGNORE_OUTGOING, &one, sizeof(int));
            var address = new Libc.SockaddrLl { Family = Libc.AF_PACKET, Protocol = protocol, IfIndex = ifindex };
            if (Libc.Bind(_fd, &address, sizeof(Libc.SockaddrLl)) < 0) throw new IOException($"bind {interfaceName}: errno {Libc.Errno}");
            var mreq = new Libc.PacketMreq { IfIndex = ifindex, Type = Libc.PACKET_MR_PROMISC };
            if (Libc.SetSockOpt(_fd, Libc.SOL_PACKET, Libc.PACKET_ADD_MEMBERSHIP, &mreq, sizeof(Libc.PacketMreq)) < 0) throw new IOException($"promiscuous {interfaceName}: errno {Libc.Errno}");
        }
        catch
        {
            Libc.Close(_fd);
            throw;
        }
        for (var i = 0; i < BatchSize; i++) _batch[i] = new PacketBuffer(EtherTypes.MaxFrameLength, null);
        Mtu = 65535; // the interface's own MTU applies on the wire; GSO frames are larger than it anyway
    }

    public override string Kind => "uplink";
    public int IfIndex { get; }
    public override bool AcceptsGso => true;
    public override bool AcceptsPartialChecksum => true;

    protected internal override void OnAttached()
    {
        _loop.Add(_fd, this);
        _registered = true;
    }

    protected internal override void OnDetached()
    {
        if (_registered) _loop.Remove(_fd);
        _registered = false;
    }

    public void OnReadable()
    {
        var iov = stackalloc Libc.IoVec[2];
        while (true)
        {
            var count = 0;
            var drained = false;
            while (count < BatchSize)
            {
                var buffer = _batch[count];
                int n;
                fixed (byte* h = _rxHeader)
                fixed (byte* f = &buffer.Data[PacketBuffer.Headroom])
                {
                    iov[0] = new Libc.IoVec { Base = h, Length = VnetHeaderSize };
                    iov[1] = new Libc.IoVec { Base = f, Length = (nuint)buffer.Capacity };
                    var r = Libc.ReadV(_fd, iov, 2);
                    if (r < 0 && Libc.Errno == Libc.EINTR) continue;
                    n = (int)r - VnetHeaderSize;
                }
                if (n < 0)
                {
                    drained = true;
                    break;
                }
                _rxHeader[10] = 0;
                _rxHeader[11] = 0;
                VirtioNetHeader.TryRead(_rxHeader, out var header);
                if (!header.TryToMetadata(n, Index, out var metadata))
                {
                    Counters.CountDrop(DropReason.Malformed);
                    continue;
                }
                buffer.SetFrame(PacketBuffer.Headroom, n);
                buffer.Metadata = metadata;
                count++;
            }
            if (count > 0) Deliver(_batch.AsSpan(0, count));
            if (drained) return;
        }
    }

    protected internal override DropReason Transmit(ReadOnlySpan<byte> frame, in FrameMetadata metadata)
    {
        VirtioNetHeader.FromMetadata(metadata).Write(_txHeader);
        fixed (byte* h = _txHeader)
        fixed (byte* f = frame)
        {
            var iov = stackalloc Libc.IoVec[2];
            iov[0] = new Libc.IoVec { Base = h, Length = VnetHeaderSize };
            iov[1] = new Libc.IoVec { Base = f, Length = (nuint)frame.Length };
            while (true)
            {
                if (Libc.WriteV(_fd, iov, 2) >= 0) return DropReason.None;
                var errno = Libc.Errno;
                if (errno == Libc.EINTR) continue;
                return errno switch
                {
                    Libc.EAGAIN => DropReason.QueueFull,
                    Libc.ENETDOWN or Libc.ENXIO => DropReason.LinkDown,
                    _ => DropReason.TxError,
                };
            }
        }
    }

    public override void Dispose()
    {
        base.Dispose();
        var fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0) Libc.Close(fd);
    }
}
