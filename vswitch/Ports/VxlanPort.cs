using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using XenIo.Net.Frames;
using XenIo.VSwitch.Core;
using XenIo.VSwitch.Interop;

namespace XenIo.VSwitch.Ports;

/// <summary>A remote tunnel endpoint; <see cref="Vni"/> overrides the port's VNI for this remote.</summary>
public sealed record VxlanRemote(IPEndPoint EndPoint, int? Vni = null)
{
    public static implicit operator VxlanRemote(IPEndPoint endPoint) => new(endPoint);
}

/// <summary>Configuration of a VXLAN port: the address it binds, its default VNI and the only remotes it talks to.</summary>
public sealed record VxlanPortOptions(IPEndPoint Local, int Vni, IReadOnlyList<VxlanRemote> Remotes)
{
    /// <summary>A socket already bound to <see cref="Local"/> (created in another network namespace, say); null to bind one here.</summary>
    public Socket? BoundSocket { get; init; }

    /// <summary>How many MACs the port learns behind its remotes at most (<see cref="VtepTable"/>).</summary>
    public int LearningLimit { get; init; } = VtepTable.DefaultLimit;

    /// <summary>How long a MAC learned behind a remote is kept without being seen again.</summary>
    public TimeSpan LearningAging { get; init; } = TimeSpan.FromSeconds(300);

    /// <summary>The clock of the learned entries' ages (tests move it).</summary>
    public TimeProvider? Time { get; init; }
}

/// <summary>
/// A VXLAN tunnel (RFC 7348) as a switch port: Ethernet frames in UDP to port 4789 (or the configured
/// one), interoperating with a Linux kernel vxlan interface. It binds to a configured address and only
/// accepts packets from the configured remotes with that remote's VNI; anything else is dropped and
/// counted (<see cref="DropReason.UnknownPeer"/>). It learns which remote each inner source MAC lives
/// behind (<see cref="Learned"/>): a frame to a learned unicast MAC goes to that remote alone; broadcast,
/// multicast and unknown unicast go to every remote (head-end replication). Frames are sent with
/// don't-fragment set: VXLAN must not fragment, so the port's MTU (by default 1450 over IPv4 and 1430
/// over IPv6, as Linux) leaves room for the 50 or 70 bytes of outer headers. Tunnels are in the split-horizon group, so the bridge
/// never forwards from one VXLAN port to another. Offloaded frames are segmented by the bridge first.
/// </summary>
public sealed class VxlanPort : SwitchPort
{
    private readonly VxlanPortOptions _options;
    private readonly Socket _socket;
    private readonly SocketAddress[] _remotes;
    private readonly int[] _vnis;
    private readonly byte[] _send = new byte[VxlanHeader.Length + EtherTypes.MaxFrameLength];
    private readonly CancellationTokenSource _stop = new();
    private readonly VtepTable _learned;
    private Task? _receive;

    public VxlanPort(string name, VxlanPortOptions options) : base(name)
    {
        if (options.Remotes.Count == 0) throw new ArgumentException("a VXLAN port needs at least one remote", nameof(options));
        // Learned MACs name their remote by index in the port's table, whose entries hold up to MaxPort.
        if (options.Remotes.Count > ForwardingDatabase.MaxPort + 1)
            throw new ArgumentException($"a VXLAN port takes at most {ForwardingDatabase.MaxPort + 1} remotes, not {options.Remotes.Count}", nameof(options));
        _options = options;
        _remotes = options.Remotes.Select(r => r.EndPoint.Serialize()).ToArray();
        _vnis = options.Remotes.Select(r => r.Vni ?? options.Vni).ToArray();
        if (_vnis.Any(v => (uint)v > VxlanHeader.MaxVni)) throw new ArgumentOutOfRangeException(nameof(options), "a VNI has 24 bits");
        _learned = new VtepTable(options.LearningLimit, options.LearningAging, options.Time);
        _socket = options.BoundSocket ?? Bind(options.Local);
        try
        {
            ForbidFragmentation(_socket);
            _socket.Blocking = false;
        }
        catch
        {
            if (options.BoundSocket is null) _socket.Dispose();
            throw;
        }
        // A configured MTU is set after construction and replaces this default.
        Mtu = _socket.AddressFamily == AddressFamily.InterNetworkV6 ? DefaultMtuIpv6 : DefaultMtuIpv4;
    }

    /// <summary>Linux's vxlan default over IPv4: 1500 less 50 bytes of outer headers (IPv4 20, UDP 8, VXLAN 8, Ethernet 14).</summary>
    public const int DefaultMtuIpv4 = 1450;

    /// <summary>Linux's vxlan default over IPv6, whose header is 20 bytes longer: 70 bytes of outer headers.</summary>
    public const int DefaultMtuIpv6 = 1430;

    private static Socket Bind(IPEndPoint local)
    {
        var socket = new Socket(local.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            socket.Bind(local);
            return socket;
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new IOException($"cannot bind {local}: {e.Message}", e);
        }
    }

    /// <summary>
    /// VTEPs must not fragment VXLAN packets (RFC 7348 section 4.3): one too large for the path is
    /// refused with EMSGSIZE and counted as <see cref="DropReason.TooBig"/>. .NET's DontFragment is
    /// IPv4 only, so IPv6 gets IPV6_DONTFRAG directly.
    /// </summary>
    private static void ForbidFragmentation(Socket socket)
    {
        if (socket.AddressFamily == AddressFamily.InterNetwork)
        {
            socket.DontFragment = true;
        }
        else if (socket.AddressFamily == AddressFamily.InterNetworkV6)
        {
            Span<byte> on = stackalloc byte[sizeof(int)];
            MemoryMarshal.Write(on, 1);
            socket.SetRawSocketOption(Libc.IPPROTO_IPV6, Libc.IPV6_DONTFRAG, on);
        }
    }

    public override string Kind => "vxlan";
    public override bool SplitHorizon => true;
    public VxlanPortOptions Options => _options;
    public int Vni => _options.Vni;
    public IPEndPoint LocalEndPoint => (IPEndPoint)_socket.LocalEndPoint!;
    internal Socket UdpSocket => _socket;

    /// <summary>The MACs learned behind the remotes.</summary>
    public VtepTable Learned => _learned;

    /// <summary>One line per first refusal of a source, for the daemon's log.</summary>
    public event Action<string>? Log;

    protected internal override void OnAttached() => _receive = Task.Run(ReceiveLoop);

    protected internal override void OnDetached()
    {
        Stop();
        // Attached again (to another bridge, say), it starts from what it hears then.
        _learned.Flush();
    }

    private async Task ReceiveLoop()
    {
        var buffer = new byte[VxlanHeader.Length + EtherTypes.MaxFrameLength];
        var from = new SocketAddress(_socket.AddressFamily);
        var loggedRefusal = false;
        var ct = _stop.Token;
        while (!ct.IsCancellationRequested)
        {
            int n;
            try
            {
                n = await _socket.ReceiveFromAsync(buffer, SocketFlags.None, from, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (SocketException)
            {
                // ICMP errors from a remote that is down surface as receive errors on a UDP socket: keep going.
                continue;
            }
            var remote = FromRemote(from);
            if (remote < 0)
            {
                Counters.CountDrop(DropReason.UnknownPeer);
                if (!loggedRefusal) Log?.Invoke($"vxlan port {Name}: dropping packets from an unconfigured remote");
                loggedRefusal = true;
                continue;
            }
            var vni = VxlanHeader.ReadVni(buffer.AsSpan(0, n));
            if (vni < 0)
            {
                Counters.CountDrop(DropReason.Malformed);
                continue;
            }
            if (vni != _vnis[remote])
            {
                Counters.CountDrop(DropReason.UnknownPeer);
                continue;
            }
            LearnSource(buffer.AsSpan(VxlanHeader.Length, n - VxlanHeader.Length), remote);
            // The VXLAN header in front of the frame is the headroom the bridge needs for a tag.
            var metadata = FrameMetadata.Plain(n - VxlanHeader.Length);
            Deliver(buffer, VxlanHeader.Length, ref metadata);
        }
    }

    /// <summary>Learns the inner frame's source behind <paramref name="remote"/>; short frames and group sources are left to the bridge to drop.</summary>
    private void LearnSource(ReadOnlySpan<byte> frame, int remote)
    {
        if (frame.Length < EtherTypes.EthernetHeaderLength || (frame[EtherTypes.MacLength] & 1) != 0) return;
        _learned.Learn(Mac(frame[EtherTypes.MacLength..]), remote);
    }

    private static ulong Mac(ReadOnlySpan<byte> bytes) => (ulong)BinaryPrimitives.ReadUInt32BigEndian(bytes) << 16 | BinaryPrimitives.ReadUInt16BigEndian(bytes[4..]);

    /// <summary>Compares only the address (a kernel vxlan picks its source port from a flow hash).</summary>
    private int FromRemote(SocketAddress from)
    {
        var source = from.Buffer.Span;
        for (var i = 0; i < _remotes.Length; i++)
        {
            var remote = _remotes[i];
            var r = remote.Buffer.Span;
            if (remote.Family != from.Family) continue;
            var same = remote.Family == AddressFamily.InterNetwork
                ? source.Slice(4, 4).SequenceEqual(r.Slice(4, 4))
                : source.Slice(8, 16).SequenceEqual(r.Slice(8, 16));
            if (same) return i;
        }
        return -1;
    }

    protected internal override DropReason Transmit(ReadOnlySpan<byte> frame, in FrameMetadata metadata)
    {
        var packet = _send.AsSpan(0, VxlanHeader.Length + frame.Length);
        frame.CopyTo(packet[VxlanHeader.Length..]);
        // A unicast destination learned behind one remote goes there alone; anything else to all.
        var known = frame.Length >= EtherTypes.MacLength && (frame[0] & 1) == 0 ? _learned.Lookup(Mac(frame)) : -1;
        if ((uint)known < (uint)_remotes.Length) return SendTo(packet, known);
        var result = DropReason.None;
        for (var i = 0; i < _remotes.Length; i++)
        {
            var sent = SendTo(packet, i);
            if (sent != DropReason.None) result = sent;
        }
        return result;
    }

    private DropReason SendTo(Span<byte> packet, int remote)
    {
        VxlanHeader.Write(packet, _vnis[remote]);
        try
        {
            _socket.SendTo(packet, SocketFlags.None, _remotes[remote]);
            return DropReason.None;
        }
        catch (SocketException e)
        {
            return e.SocketErrorCode switch
            {
                SocketError.WouldBlock or SocketError.NoBufferSpaceAvailable => DropReason.QueueFull,
                SocketError.MessageSize => DropReason.TooBig,
                _ => DropReason.TxError,
            };
        }
    }

    private void Stop()
    {
        if (_stop.IsCancellationRequested) return;
        _stop.Cancel();
        _socket.Dispose();
        try
        {
            _receive?.Wait(TimeSpan.FromSeconds(5));
        }
        catch (AggregateException)
        {
        }
    }

    public override void Dispose()
    {
        base.Dispose();
        Stop();
    }
}
