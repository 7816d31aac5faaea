using System.Net.Sockets;
using System.Runtime.CompilerServices;
using XenIo.Hypervisor.Interop;

namespace XenIo.Hypervisor.Events;

/// <summary>
/// An event channel endpoint: one end of an AF_UNIX stream socketpair whose other end the remote
/// domain holds, so notifications go straight between the two processes and never through hyperd.
/// A notification is one byte sent without blocking; a full socket buffer means the peer already has
/// unread notifications, so the byte is dropped (coalescing). A wake-up drains every pending byte.
/// End of file means the peer's process closed the port or died.
/// </summary>
/// <remarks>
/// A socketpair rather than an eventfd: the runtime can await a socket (no dedicated thread per
/// channel) and it reports the peer's death as end of file (LINUX-NOTES.md).
/// </remarks>
public sealed class EventChannel : IEventChannel, IDisposable
{
    private readonly Socket _socket;
    private readonly int _fd;
    private readonly Memory<byte> _asyncBuffer = new byte[64];
    private int _disposed;
    private volatile bool _peerClosed;

    /// <summary>Wraps an endpoint descriptor received from hyperd; takes ownership of it.</summary>
    public EventChannel(uint port, int fd)
    {
        Port = port;
        _fd = fd;
        _socket = new Socket(new SafeSocketHandle(fd, ownsHandle: true));
    }

    public uint Port { get; }

    public bool PeerClosed => _peerClosed;

    public unsafe void Notify()
    {
        if (Volatile.Read(ref _disposed) != 0) return;
        byte one = 1;
        // EAGAIN: the peer has notifications pending already. EPIPE/ECONNRESET: it has gone. Both are no-ops.
        Libc.send(_fd, &one, 1, Libc.MSG_DONTWAIT | Libc.MSG_NOSIGNAL);
    }

    public bool Wait(int timeoutMs)
    {
        if (_peerClosed) return true;
        if (!Libc.PollReadable(_fd, timeoutMs)) return false;
        Drain();
        return true;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<bool> WaitAsync(CancellationToken cancellationToken = default)
    {
        if (_peerClosed) return false;
        int received;
        try
        {
            received = await _socket.ReceiveAsync(_asyncBuffer, SocketFlags.None, cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException)
        {
            received = 0;
        }
        if (received == 0)
        {
            _peerClosed = true;
            return false;
        }
        Drain();
        return !_peerClosed;
    }

    /// <summary>Clears the pending state without waiting; true if anything was pending.</summary>
    public bool Poll()
    {
        if (_peerClosed) return false;
        return Drain();
    }

    private unsafe bool Drain()
    {
        byte* buffer = stackalloc byte[64];
        bool any = false;
        while (true)
        {
            nint n = Libc.recv(_fd, buffer, 64, Libc.MSG_DONTWAIT);
            if (n > 0)
            {
                any = true;
                if (n < 64) return true;
                continue;
            }
            if (n == 0 || Libc.Errno is not (Libc.EAGAIN or Libc.EINTR)) _peerClosed = true;
            return any;
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _socket.Dispose();
    }
}
