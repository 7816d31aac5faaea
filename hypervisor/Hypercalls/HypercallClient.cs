using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Events;
using XenIo.Hypervisor.Grants;
using XenIo.Hypervisor.Interop;
using XenIo.Hypervisor.Memory;

namespace XenIo.Hypervisor.Hypercalls;

/// <summary>A hypercall hyperd refused: <see cref="Errno"/> is the positive errno of its -errno result.</summary>
public sealed class HypercallException(HypercallOp op, int errno)
    : IOException($"{op} failed: {Libc.Describe(errno)}")
{
    public HypercallOp Op { get; } = op;
    public int Errno { get; } = errno;
}

/// <summary>What <see cref="HypercallClient.DomainInfo"/> and map_foreign report about a domain.</summary>
public readonly record struct DomainDescription(ushort Domid, uint Frames, uint GrantFrames);

/// <summary>
/// The caller's end of the hypercall interface: a guest's inherited connection or a dom0 client of
/// <c>hypercall.sock</c>. Calls are synchronous request/reply (control path); buffers are allocated
/// once. As an <see cref="IGrantMapRecorder"/> it tells hyperd about grant mappings without waiting.
/// </summary>
public sealed unsafe class HypercallClient : IGrantMapRecorder, IDisposable
{
    private readonly SafeHandle _handle;
    /// <summary>The Socket that owns <see cref="_handle"/> for a connected dom0 client: kept so its finalizer cannot close our descriptor.</summary>
    private readonly Socket? _socket;
    private readonly int _fd;
    private readonly object _gate = new();
    private readonly byte[] _tx = new byte[HypercallMessage.MaxSize];
    private readonly byte[] _rx = new byte[HypercallMessage.MaxSize + 1];
    private uint _nextRequest;

    /// <summary>Wraps a connected SOCK_SEQPACKET descriptor (a guest's inherited end); takes ownership.</summary>
    public HypercallClient(int fd) : this(new SafeFileHandle(fd, ownsHandle: true))
    {
    }

    public HypercallClient(SafeHandle handle)
    {
        _handle = handle;
        _fd = (int)handle.DangerousGetHandle();
    }

    private HypercallClient(Socket socket) : this(socket.SafeHandle)
    {
        _socket = socket;
    }

    /// <summary>Connects to hyperd's dom0 socket.</summary>
    public static HypercallClient Connect(string socketPath)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Seqpacket, ProtocolType.Unspecified);
        try
        {
            socket.Connect(new UnixDomainSocketEndPoint(socketPath));
            return new HypercallClient(socket);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary><c>EVTCHNOP_alloc_unbound</c>: a port only <paramref name="remoteDom"/> may bind, with our endpoint.</summary>
    public EventChannel AllocUnbound(ushort remoteDom)
    {
        Span<byte> p = stackalloc byte[4];
        int port = Call(HypercallOp.EvtchnAllocUnbound, p[..HypercallMessage.WriteDomid(p, remoteDom)], default, out _, out int fd);
        return Channel(HypercallOp.EvtchnAllocUnbound, (uint)port, fd);
    }

    /// <summary><c>EVTCHNOP_bind_interdomain</c>: a local port bound to the remote's unbound port; pending once.</summary>
    public EventChannel BindInterdomain(ushort remoteDom, uint remotePort)
    {
        Span<byte> p = stackalloc byte[8];
        int port = Call(HypercallOp.EvtchnBindInterdomain, p[..HypercallMessage.WriteDomidAndU32(p, remoteDom, 0, remotePort)], default, out _, out int fd);
        return Channel(HypercallOp.EvtchnBindInterdomain, (uint)port, fd);
    }

    /// <summary>The endpoint of our unbound port again (after its peer closed and our old endpoint saw end of file).</summary>
    public EventChannel ReopenEndpoint(uint port)
    {
        Span<byte> p = stackalloc byte[4];
        Call(HypercallOp.EvtchnEndpoint, p[..HypercallMessage.WriteU32(p, port)], default, out _, out int fd);
        return Channel(HypercallOp.EvtchnEndpoint, port, fd);
    }

    /// <summary><c>EVTCHNOP_close</c>. Dispose the <see cref="EventChannel"/> as well so the peer sees end of file.</summary>
    public void Close(uint port)
    {
        Span<byte> p = stackalloc byte[4];
        Call(HypercallOp.EvtchnClose, p[..HypercallMessage.WriteU32(p, port)], default, out _, out _);
    }

    /// <summary><c>EVTCHNOP_status</c> of one of our ports.</summary>
    public (EventChannelStatus Status, ushort RemoteDom, uint RemotePort) Status(uint port)
    {
        Span<byte> p = stackalloc byte[4];
        Span<byte> reply = stackalloc byte[12];
        Call(HypercallOp.EvtchnStatus, p[..HypercallMessage.WriteU32(p, port)], reply, out int length, out _);
        if (!HypercallMessage.TryReadStatusReply(reply[..length], out uint status, out ushort remoteDom, out uint remotePort))
            throw new InvalidDataException("malformed status reply");
        return ((EventChannelStatus)status, remoteDom, remotePort);
    }

    /// <summary><c>XENMEM_decrease_reservation</c>: gives frames back to the host; returns how many were released.</summary>
    public int DecreaseReservation(ReadOnlySpan<uint> frames) => Frames(HypercallOp.DecreaseReservation, frames);

    /// <summary><c>XENMEM_populate_physmap</c>: takes frames back, zeroed; returns how many were populated.</summary>
    public int PopulatePhysmap(ReadOnlySpan<uint> frames) => Frames(HypercallOp.PopulatePhysmap, frames);

    /// <summary><c>SCHEDOP_shutdown</c>.</summary>
    public void Shutdown(ShutdownReason reason)
    {
        Span<byte> p = stackalloc byte[4];
        Call(HypercallOp.Shutdown, p[..HypercallMessage.WriteU32(p, (uint)reason)], default, out _, out _);
    }

    /// <summary>Who we are: our domain id and memory geometry (a guest needs it to set up its grant table).</summary>
    public DomainDescription DomainInfo()
    {
        Span<byte> reply = stackalloc byte[12];
        Call(HypercallOp.DomainInfo, default, reply, out int length, out _);
        return HypercallMessage.TryReadDomainReply(reply[..length], out ushort d, out uint f, out uint g)
            ? new DomainDescription(d, f, g) : throw new InvalidDataException("malformed domain reply");
    }

    /// <summary>dom0: a guest's memory descriptor, mapped, with the grant checks of <see cref="ForeignDomain"/>.</summary>
    public ForeignDomain MapForeign(ushort domid)
    {
        Span<byte> p = stackalloc byte[4];
        Span<byte> reply = stackalloc byte[12];
        Call(HypercallOp.MapForeign, p[..HypercallMessage.WriteDomid(p, domid)], reply, out int length, out int fd);
        if (fd < 0) throw new InvalidDataException("map_foreign reply carried no descriptor");
        if (!HypercallMessage.TryReadDomainReply(reply[..length], out ushort d, out _, out uint grantFrames) || d != domid)
        {
            Libc.close(fd);
            throw new InvalidDataException("malformed map_foreign reply");
        }
        var memory = DomainMemory.Map(fd);
        return new ForeignDomain(memory, domid, grantFrames, DomainIds.Dom0, this);
    }

    bool IGrantMapRecorder.Mapped(ushort domid, uint gref, bool readOnly) => Note(HypercallOp.GrantMapped, domid, gref, readOnly);

    // If hyperd is gone there is nobody left to tell, and nothing it would release.
    void IGrantMapRecorder.Unmapped(ushort domid, uint gref, bool readOnly) => Note(HypercallOp.GrantUnmapped, domid, gref, readOnly);

    /// <summary>Sends one raw message (tests of hyperd's parser).</summary>
    internal nint SendRaw(ReadOnlySpan<byte> message) => Libc.SendWithDescriptors(_fd, message, default, 0);

    private bool Note(HypercallOp op, ushort domid, uint gref, bool readOnly)
    {
        Span<byte> message = stackalloc byte[HypercallHeader.Size + 8];
        HypercallMessage.WriteDomidAndU32(message[HypercallHeader.Size..], domid, readOnly ? (ushort)1 : (ushort)0, gref);
        HypercallMessage.WriteHeader(message, new HypercallHeader(op, 8, 0, 0));
        // No reply: hyperd processes the note before anything we send later on this connection.
        return Libc.SendWithDescriptors(_fd, message, default, 0) == message.Length;
    }

    private int Frames(HypercallOp op, ReadOnlySpan<uint> frames)
    {
        int done = 0;
        Span<byte> p = stackalloc byte[4 + 4 * HypercallMessage.MaxFrames];
        while (done < frames.Length)
        {
            var batch = frames.Slice(done, Math.Min(HypercallMessage.MaxFrames, frames.Length - done));
            int n = Call(op, p[..HypercallMessage.WriteFrames(p, batch)], default, out _, out _);
            done += n;
            if (n < batch.Length) break;
        }
        return done;
    }

    private static EventChannel Channel(HypercallOp op, uint port, int fd) =>
        fd >= 0 ? new EventChannel(port, fd) : throw new InvalidDataException($"{op} reply carried no endpoint");

    /// <summary>Sends a request and waits for its reply; returns the non-negative result or throws <see cref="HypercallException"/>.</summary>
    private int Call(HypercallOp op, ReadOnlySpan<byte> payload, Span<byte> replyPayload, out int replyLength, out int fd)
    {
        replyLength = 0;
        fd = -1;
        lock (_gate)
        {
            uint id = ++_nextRequest;
            int length = HypercallMessage.Write(_tx, op, id, 0, payload);
            nint sent = Libc.SendWithDescriptors(_fd, _tx.AsSpan(0, length), default, 0);
            if (sent != length) throw new IOException($"{op}: hypercall connection lost ({(sent < 0 ? Libc.Describe((int)-sent) : "short send")})");
            Span<int> fds = stackalloc int[1];
            nint n = Libc.ReceiveWithDescriptors(_fd, _rx, fds, out int fdCount, out bool truncated, 0);
            if (n <= 0) throw new IOException($"{op}: hypercall connection closed by hyperd");
            if (fdCount > 0) fd = fds[0];
            if (truncated || !HypercallMessage.TryReadHeader(_rx.AsSpan(0, (int)n), out var header) || header.Op != op || header.RequestId != id)
            {
                if (fd >= 0) Libc.close(fd);
                throw new InvalidDataException($"{op}: malformed reply from hyperd");
            }
            if (header.Result < 0)
            {
                if (fd >= 0) Libc.close(fd);
                throw new HypercallException(op, -header.Result);
            }
            var body = _rx.AsSpan(HypercallHeader.Size, header.PayloadLength);
            if (body.Length > replyPayload.Length)
            {
                if (fd >= 0) Libc.close(fd);
                throw new InvalidDataException($"{op}: reply payload too long");
            }
            body.CopyTo(replyPayload);
            replyLength = body.Length;
            return header.Result;
        }
    }

    public void Dispose()
    {
        if (_socket is not null) _socket.Dispose();
        else _handle.Dispose();
    }
}
