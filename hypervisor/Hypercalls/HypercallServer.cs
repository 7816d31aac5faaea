using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Daemons;
using XenIo.Hypervisor.Events;
using XenIo.Hypervisor.Grants;
using XenIo.Hypervisor.Interop;

namespace XenIo.Hypervisor.Hypercalls;

/// <summary>
/// hyperd's end of the hypercall interface: every guest's inherited SOCK_SEQPACKET connection and the
/// dom0 socket <c>&lt;run&gt;/hypercall.sock</c> (0600), served by one epoll thread. Requests are
/// parsed by <see cref="HypercallMessage"/>; a malformed one closes that connection only, with one
/// log line. When a connection closes, its event channels are closed and (for dom0 clients) the
/// grants it held mapped are released, so a crashed backend pins nothing.
/// </summary>
public sealed unsafe class HypercallServer : IDisposable
{
    private const ulong WakeToken = 1;
    private const ulong ListenerToken = 2;
    private const int MessagesPerWakeup = 32;
    private const int ENOSYS = 38;
    private const int EPERM = 1;
    private const int ESRCH = 3;
    private const int EINVAL = 22;

    private readonly EventChannelTable _events;
    private readonly MappedGrantLedger _ledger;
    private readonly IDomainRegistry _domains;
    private readonly ILogger _logger;
    private readonly int _epoll;
    private readonly int _wake;
    private readonly object _gate = new();
    private readonly Dictionary<ulong, Connection> _connections = [];
    private readonly System.Collections.Concurrent.ConcurrentQueue<(Action Action, ManualResetEventSlim Done)> _work = new();
    private readonly byte[] _rx = new byte[HypercallMessage.MaxSize + 1];
    private readonly byte[] _tx = new byte[256];
    private readonly uint[] _frames = new uint[HypercallMessage.MaxFrames];
    private Socket? _listener;
    private Thread? _thread;
    private volatile bool _stopping;
    private ulong _nextId = 16;

    private sealed class Connection(ulong id, SafeFileHandle handle, ushort domid, bool privileged)
    {
        public ulong Id { get; } = id;
        public SafeFileHandle Handle { get; } = handle;
        public int Fd { get; } = (int)handle.DangerousGetHandle();
        public ushort Domid { get; } = domid;
        public bool Privileged { get; } = privileged;
        public string Name => Privileged ? $"dom0 client {Id}" : $"domain {Domid}";
    }

    public HypercallServer(EventChannelTable events, MappedGrantLedger ledger, IDomainRegistry domains, ILogger logger)
    {
        _events = events;
        _ledger = ledger;
        _domains = domains;
        _logger = logger;
        _epoll = Libc.epoll_create1(Libc.EPOLL_CLOEXEC);
        if (_epoll < 0) throw new IOException($"epoll_create1: {Libc.Describe(Libc.Errno)}");
        _wake = Libc.eventfd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK);
        if (_wake < 0) throw new IOException($"eventfd: {Libc.Describe(Libc.Errno)}");
        Watch(_wake, WakeToken);
    }

    public string? SocketPath { get; private set; }

    /// <summary>
    /// Serves dom0 clients on <paramref name="socketPath"/>, created 0600 (<see cref="ListeningSocket.Unix"/>).
    /// </summary>
    public void Listen(string socketPath)
    {
        if (_listener is not null) throw new InvalidOperationException("already listening");
        var listener = ListeningSocket.Unix(socketPath, UnixFileMode.UserRead | UnixFileMode.UserWrite, backlog: 64, SocketType.Seqpacket);
        listener.Blocking = false;
        _listener = listener;
        SocketPath = socketPath;
        Watch((int)listener.Handle, ListenerToken);
    }

    /// <summary>Serves a guest's connection (hyperd's end of the socketpair the guest inherits). Takes ownership.</summary>
    public void AddGuest(ushort domid, SafeFileHandle connection) => Add(connection, domid, privileged: false);

    /// <summary>Serves a dom0 client on an already connected socket (in-process hosts). Takes ownership.</summary>
    public void AddPrivileged(SafeFileHandle connection) => Add(connection, DomainIds.Dom0, privileged: true);

    /// <summary>
    /// Runs <paramref name="action"/> on the server thread and waits for it: the way to change what
    /// the server reads (close a guest's connection, unmap a destroyed domain's memory) without racing
    /// a request it is handling. Runs inline when called from the server thread or when it is not running.
    /// </summary>
    public void Invoke(Action action)
    {
        if (_thread is null || _stopping || Thread.CurrentThread == _thread)
        {
            action();
            return;
        }
        using var done = new ManualResetEventSlim();
        _work.Enqueue((action, done));
        ulong one = 1;
        Libc.write(_wake, &one, 8);
        done.Wait();
    }

    private void RunPostedWork()
    {
        while (_work.TryDequeue(out var item))
        {
            try
            {
                item.Action();
            }
            catch (Exception e)
            {
                _logger.LogError(e, "hypercall server: posted work failed");
            }
            finally
            {
                item.Done.Set();
            }
        }
    }

    /// <summary>Closes a guest's hypercall connection (its domain is being destroyed). Call through <see cref="Invoke"/>.</summary>
    public void DisconnectGuest(ushort domid)
    {
        Connection[] guests;
        lock (_gate) guests = _connections.Values.Where(c => !c.Privileged && c.Domid == domid).ToArray();
        foreach (var c in guests) Drop(c, null);
    }

    public void Start()
    {
        if (_thread is not null) return;
        _thread = new Thread(Run) { IsBackground = true, Name = "hypercall server" };
        _thread.Start();
    }

    public int ConnectionCount { get { lock (_gate) return _connections.Count; } }

    private void Add(SafeFileHandle handle, ushort domid, bool privileged)
    {
        Connection connection;
        lock (_gate)
        {
            connection = new Connection(_nextId++, handle, domid, privileged);
            _connections[connection.Id] = connection;
        }
        Watch(connection.Fd, connection.Id);
    }

    private void Watch(int fd, ulong token)
    {
        var ev = new Libc.EpollEvent { Events = Libc.EPOLLIN | Libc.EPOLLRDHUP, Data = token };
        if (Libc.epoll_ctl(_epoll, Libc.EPOLL_CTL_ADD, fd, &ev) != 0)
            throw new IOException($"epoll_ctl: {Libc.Describe(Libc.Errno)}");
    }

    private void Run()
    {
        var events = stackalloc Libc.EpollEvent[32];
        while (!_stopping)
        {
            int n = Libc.epoll_wait(_epoll, events, 32, ResumeAcceptingIn());
            if (n < 0)
            {
                if (Libc.Errno == Libc.EINTR) continue;
                _logger.LogError("hypercall server: epoll_wait failed: {Error}", Libc.Describe(Libc.Errno));
                return;
            }
            for (int i = 0; i < n && !_stopping; i++)
            {
                ulong token = events[i].Data;
                if (token == WakeToken)
                {
                    ulong count;
                    Libc.read(_wake, &count, 8);
                    RunPostedWork();
                    continue;
                }
                if (token == ListenerToken)
                {
                    AcceptAll();
                    continue;
                }
                Connection? connection;
                lock (_gate) _connections.TryGetValue(token, out connection);
                if (connection is not null) Service(connection);
            }
        }
    }

    private void AcceptAll()
    {
        if (_listener is null) return;
        while (true)
        {
            int fd = Libc.accept4((int)_listener.Handle, null, null, Libc.SOCK_NONBLOCK | Libc.SOCK_CLOEXEC);
            if (fd < 0)
            {
                int errno = Libc.Errno;
                if (errno == Libc.EINTR || errno == ECONNABORTED) continue;
                if (errno != Libc.EAGAIN) PauseAccepting(errno);
                return;
            }
            _acceptRetry.Succeeded(LogAccept);
            Add(new SafeFileHandle(fd, ownsHandle: true), DomainIds.Dom0, privileged: true);
        }
    }

    private const int ECONNABORTED = 103;
    private AcceptRetry _acceptRetry;
    /// <summary>When the listener, taken out of the loop after a failed accept, is watched again (0 while it is watched).</summary>
    private long _acceptResumesAt;

    private void LogAccept(string message) => _logger.LogWarning("hypercall server: {Message}", message);

    /// <summary>
    /// A failed accept leaves the listener readable, and the level-triggered loop would spin on it:
    /// stop watching it for the retry's wait.
    /// </summary>
    private void PauseAccepting(int errno)
    {
        var wait = _acceptRetry.Failed(Libc.Describe(errno), LogAccept);
        Libc.epoll_ctl(_epoll, Libc.EPOLL_CTL_DEL, (int)_listener!.Handle, null);
        _acceptResumesAt = Environment.TickCount64 + (long)wait.TotalMilliseconds;
    }

    /// <summary>The epoll timeout: -1 while the listener is watched; else the milliseconds until it is, watching it again once they have passed.</summary>
    private int ResumeAcceptingIn()
    {
        if (_acceptResumesAt == 0) return -1;
        var left = _acceptResumesAt - Environment.TickCount64;
        if (left > 0) return (int)left;
        _acceptResumesAt = 0;
        Watch((int)_listener!.Handle, ListenerToken);
        return -1;
    }

    private void Service(Connection connection)
    {
        Span<int> fds = stackalloc int[2];
        for (int m = 0; m < MessagesPerWakeup; m++)
        {
            nint n = Libc.ReceiveWithDescriptors(connection.Fd, _rx, fds, out int fdCount, out bool truncated, Libc.MSG_DONTWAIT);
            for (int i = 0; i < fdCount; i++) Libc.close(fds[i]);
            if (n == -Libc.EAGAIN) return;
            if (n <= 0)
            {
                Drop(connection, n == 0 ? null : $"receive failed: {Libc.Describe((int)-n)}");
                return;
            }
            if (truncated || fdCount > 0 || !HypercallMessage.TryReadHeader(_rx.AsSpan(0, (int)n), out var header))
            {
                Drop(connection, "malformed message");
                return;
            }
            if (!Handle(connection, header, _rx.AsSpan(HypercallHeader.Size, header.PayloadLength))) return;
        }
    }

    /// <summary>Handles one well-framed request; false when the connection was dropped.</summary>
    private bool Handle(Connection c, in HypercallHeader header, ReadOnlySpan<byte> payload)
    {
        Span<byte> reply = _tx.AsSpan(HypercallHeader.Size);
        int replyLength = 0;
        int result;
        // Always a descriptor of our own, disposed after sending: never a borrowed one that another
        // thread (a domain being destroyed) could close under us.
        SafeFileHandle? sendFd = null;
        ushort domid = c.Domid;
        long owner = (long)c.Id;

        switch (header.Op)
        {
            case HypercallOp.EvtchnAllocUnbound:
                if (!HypercallMessage.TryReadDomid(payload, out ushort remote)) return Malformed(c, header.Op);
                result = _events.AllocUnbound(domid, owner, remote, out sendFd);
                break;
            case HypercallOp.EvtchnBindInterdomain:
                if (!HypercallMessage.TryReadDomidAndU32(payload, 0, out ushort remoteDom, out _, out uint remotePort)) return Malformed(c, header.Op);
                result = _events.BindInterdomain(domid, owner, remoteDom, remotePort, out sendFd);
                break;
            case HypercallOp.EvtchnClose:
                if (!HypercallMessage.TryReadU32(payload, out uint closePort)) return Malformed(c, header.Op);
                result = _events.Close(domid, owner, closePort);
                break;
            case HypercallOp.EvtchnStatus:
                if (!HypercallMessage.TryReadU32(payload, out uint statusPort)) return Malformed(c, header.Op);
                result = _events.Status(domid, statusPort, out var status, out ushort sRemoteDom, out uint sRemotePort);
                if (result == 0) replyLength = HypercallMessage.WriteStatusReply(reply, (uint)status, sRemoteDom, sRemotePort);
                break;
            case HypercallOp.EvtchnEndpoint:
                if (!HypercallMessage.TryReadU32(payload, out uint endpointPort)) return Malformed(c, header.Op);
                result = _events.Endpoint(domid, owner, endpointPort, out sendFd);
                break;
            case HypercallOp.DecreaseReservation:
            case HypercallOp.PopulatePhysmap:
            {
                int count = HypercallMessage.TryReadFrames(payload, _frames);
                if (count < 0) return Malformed(c, header.Op);
                if (c.Privileged || _domains.Find(domid) is not { } self)
                {
                    result = -ENOSYS;
                    break;
                }
                var frames = _frames.AsSpan(0, count);
                result = header.Op == HypercallOp.DecreaseReservation
                    ? self.Reservation.DecreaseReservation(frames)
                    : self.Reservation.PopulatePhysmap(frames);
                break;
            }
            case HypercallOp.Shutdown:
                if (!HypercallMessage.TryReadU32(payload, out uint reason) || reason > (uint)ShutdownReason.SoftReset) return Malformed(c, header.Op);
                if (c.Privileged)
                {
                    result = -EINVAL;
                    break;
                }
                _domains.OnShutdown(domid, (ShutdownReason)reason);
                result = 0;
                break;
            case HypercallOp.DomainInfo:
                if (payload.Length != 0) return Malformed(c, header.Op);
                if (c.Privileged)
                {
                    replyLength = HypercallMessage.WriteDomainReply(reply, DomainIds.Dom0, 0, 0);
                }
                else if (_domains.Find(domid) is { } info)
                {
                    replyLength = HypercallMessage.WriteDomainReply(reply, domid, info.Memory.FrameCount, info.GrantFrames);
                }
                result = replyLength > 0 ? 0 : -ESRCH;
                break;
            case HypercallOp.MapForeign:
                if (!HypercallMessage.TryReadDomid(payload, out ushort foreign)) return Malformed(c, header.Op);
                if (!c.Privileged)
                {
                    result = -EPERM;
                    break;
                }
                if (_domains.Find(foreign) is not { } target)
                {
                    result = -ESRCH;
                    break;
                }
                try
                {
                    sendFd = target.Memory.Duplicate();
                }
                catch (ObjectDisposedException)
                {
                    result = -ESRCH; // destroyed meanwhile
                    break;
                }
                replyLength = HypercallMessage.WriteDomainReply(reply, foreign, target.Memory.FrameCount, target.GrantFrames);
                result = 0;
                break;
            case HypercallOp.GrantMapped:
            case HypercallOp.GrantUnmapped:
            {
                if (!c.Privileged || !HypercallMessage.TryReadDomidAndU32(payload, 1, out ushort gDom, out ushort gFlags, out uint gref))
                    return Malformed(c, header.Op);
                bool readOnly = (gFlags & 1) != 0;
                if (header.Op == HypercallOp.GrantMapped)
                {
                    if (_domains.Find(gDom) is not { } d || gref >= GrantEntries.EntriesIn(d.GrantFrames))
                        _logger.LogWarning("hypercall: {Client} noted a mapping of d{Domid} ref {Ref} that does not exist", c.Name, gDom, gref);
                    else if (!_ledger.Record(owner, gDom, gref, readOnly))
                        return Drop(c, "too many grant mappings");
                }
                else if (!_ledger.Forget(owner, gDom, gref, readOnly))
                {
                    _logger.LogWarning("hypercall: {Client} unmapped d{Domid} ref {Ref} it never noted", c.Name, gDom, gref);
                }
                return true;
            }
            default:
                return Malformed(c, header.Op);
        }

        int length = HypercallMessage.Write(_tx, header.Op, header.RequestId, result, reply[..replyLength]);
        // Replies are small and clients wait for them: a full socket buffer means a client that does not read.
        nint sent;
        if (sendFd is not null && result >= 0)
        {
            int fd = (int)sendFd.DangerousGetHandle();
            sent = Libc.SendWithDescriptors(c.Fd, _tx.AsSpan(0, length), new ReadOnlySpan<int>(in fd), Libc.MSG_DONTWAIT);
        }
        else
        {
            sent = Libc.SendWithDescriptors(c.Fd, _tx.AsSpan(0, length), default, Libc.MSG_DONTWAIT);
        }
        sendFd?.Dispose();
        if (sent != length) return Drop(c, $"reply not sent ({(sent < 0 ? Libc.Describe((int)-sent) : "short")})");
        return true;
    }

    private bool Malformed(Connection c, HypercallOp op) => Drop(c, $"malformed {op} request");

    /// <summary>Closes a connection and releases what it held. <paramref name="why"/> null: a clean close.</summary>
    private bool Drop(Connection c, string? why)
    {
        lock (_gate)
        {
            if (!_connections.Remove(c.Id)) return false;
        }
        Libc.epoll_ctl(_epoll, Libc.EPOLL_CTL_DEL, c.Fd, null);
        if (why is not null) _logger.LogWarning("hypercall: closing {Client}: {Reason}", c.Name, why);
        c.Handle.Dispose();
        _events.CloseOwnedBy(c.Domid, (long)c.Id);
        if (c.Privileged)
        {
            int released = _ledger.ReleaseClient((long)c.Id, ReleaseTarget);
            if (released > 0) _logger.LogInformation("hypercall: {Client} closed holding {Count} grant mappings; released", c.Name, released);
        }
        else
        {
            _domains.OnGuestDisconnected(c.Domid);
        }
        return false;
    }

    private (Memory.DomainMemory, uint)? ReleaseTarget(ushort domid) =>
        _domains.Find(domid) is { } d ? (d.Memory, d.GrantFrames) : null;

    public void Dispose()
    {
        _stopping = true;
        ulong one = 1;
        Libc.write(_wake, &one, 8);
        _thread?.Join();
        RunPostedWork();
        Connection[] all;
        lock (_gate) all = [.. _connections.Values];
        foreach (var c in all) Drop(c, null);
        _listener?.Dispose();
        if (SocketPath is not null)
        {
            try { File.Delete(SocketPath); } catch (IOException) { } // the run directory may be gone already
        }
        Libc.close(_wake);
        Libc.close(_epoll);
    }
}
