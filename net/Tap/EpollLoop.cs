using System.Runtime.InteropServices;
using XenIo.Net.Interop;

namespace XenIo.Net.Tap;

/// <summary>Called on the loop's thread when a registered descriptor is readable (or has failed).</summary>
public interface IReadinessHandler
{
    /// <summary>Drain the descriptor until it would block: one wake-up serves a batch of frames.</summary>
    void OnReadable();
}

/// <summary>
/// An epoll loop on a dedicated thread, the way LINUX-NOTES asks for TAP I/O (the runtime cannot await a
/// TAP descriptor). Level-triggered, so a handler that stops draining early is woken again. Stopping
/// goes through an eventfd, so <see cref="Dispose"/> never waits on a blocked epoll_wait.
/// </summary>
public sealed unsafe class EpollLoop : IDisposable
{
    private const int MaxEvents = 64;
    private readonly int _epfd;
    private readonly int _wakeFd;
    private readonly Thread _thread;
    private readonly Lock _gate = new();
    private readonly Dictionary<int, IReadinessHandler> _handlers = [];
    private IReadinessHandler?[] _byToken = new IReadinessHandler?[16];
    private volatile bool _stopping;

    public EpollLoop(string name)
    {
        _epfd = Libc.EpollCreate1(Libc.EPOLL_CLOEXEC);
        if (_epfd < 0) throw new IOException($"epoll_create1: errno {Libc.Errno}");
        _wakeFd = Libc.EventFd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK);
        if (_wakeFd < 0) throw new IOException($"eventfd: errno {Libc.Errno}");
        Control(Libc.EPOLL_CTL_ADD, _wakeFd, Libc.EPOLLIN, ulong.MaxValue);
        _thread = new Thread(Run) { IsBackground = true, Name = name };
        _thread.Start();
    }

    /// <summary>Unhandled exceptions from handlers land here (logged by the owner) instead of killing the process.</summary>
    public event Action<Exception>? HandlerFailed;

    public void Add(int fd, IReadinessHandler handler)
    {
        lock (_gate)
        {
            if (!_handlers.TryAdd(fd, handler)) throw new InvalidOperationException($"fd {fd} is already registered");
            if (fd >= _byToken.Length) Array.Resize(ref _byToken, Math.Max(fd + 1, _byToken.Length * 2));
            Volatile.Write(ref _byToken[fd], handler);
            Control(Libc.EPOLL_CTL_ADD, fd, Libc.EPOLLIN, (ulong)fd);
        }
    }

    public void Remove(int fd)
    {
        lock (_gate)
        {
            if (!_handlers.Remove(fd)) return;
            Control(Libc.EPOLL_CTL_DEL, fd, 0, 0);
            Volatile.Write(ref _byToken[fd], null);
        }
    }

    private void Control(int op, int fd, uint events, ulong token)
    {
        var ev = stackalloc byte[16];
        *(uint*)ev = events;
        *(ulong*)(ev + Libc.EpollDataOffset) = token;
        if (Libc.EpollCtl(_epfd, op, fd, ev) < 0) throw new IOException($"epoll_ctl({op}, {fd}): errno {Libc.Errno}");
    }

    private void Run()
    {
        var size = Libc.EpollEventSize;
        var events = (byte*)NativeMemory.Alloc((nuint)(MaxEvents * size));
        try
        {
            while (!_stopping)
            {
                var n = Libc.EpollWait(_epfd, events, MaxEvents, -1);
                if (n < 0)
                {
                    if (Libc.Errno == Libc.EINTR) continue;
                    return;
                }
                for (var i = 0; i < n && !_stopping; i++)
                {
                    var token = *(ulong*)(events + i * size + Libc.EpollDataOffset);
                    if (token == ulong.MaxValue) continue;
                    var table = Volatile.Read(ref _byToken);
                    var handler = token < (ulong)table.Length ? Volatile.Read(ref table[token]) : null;
                    if (handler is null) continue;
                    try
                    {
                        handler.OnReadable();
                    }
                    catch (Exception e)
                    {
                        HandlerFailed?.Invoke(e);
                    }
                }
            }
        }
        finally
        {
            NativeMemory.Free(events);
        }
    }

    public bool IsLoopThread => Thread.CurrentThread == _thread;

    public void Dispose()
    {
        if (_stopping) return;
        _stopping = true;
        ulong one = 1;
        Libc.Write(_wakeFd, &one, 8);
        if (!IsLoopThread) _thread.Join();
        Libc.Close(_wakeFd);
        Libc.Close(_epfd);
    }
}
