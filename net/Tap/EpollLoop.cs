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
    /// <summary>The handler the loop thread is in, which <see cref="Remove"/> waits out.</summary>
    private IReadinessHandler? _running;

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

    /// <summary>
    /// Stops polling <paramref name="fd"/>. Called off the loop thread, it returns only once the loop is
    /// not in that descriptor's handler, so the caller may close the descriptor: otherwise a handler
    /// still running could read a descriptor number the kernel has already given to someone else.
    /// Never call it holding a lock the handler takes.
    /// </summary>
    public void Remove(int fd)
    {
        IReadinessHandler? removed;
        lock (_gate)
        {
            if (!_handlers.Remove(fd, out removed)) return;
            Control(Libc.EPOLL_CTL_DEL, fd, 0, 0);
            Volatile.Write(ref _byToken[fd], null);
        }
        if (IsLoopThread) return;
        // Pairs with the loop's exchange before it re-checks the table: either it sees the handler gone
        // or this sees it running.
        Interlocked.MemoryBarrier();
        var spin = new SpinWait();
        while (Volatile.Read(ref _running) == removed) spin.SpinOnce();
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
                    var handler = Registered(token);
                    if (handler is null) continue;
                    Interlocked.Exchange(ref _running, handler);
                    try
                    {
                        // Removed between the lookup and now: Remove may have returned already.
                        if (Registered(token) == handler) handler.OnReadable();
                    }
                    catch (Exception e)
                    {
                        HandlerFailed?.Invoke(e);
                    }
                    finally
                    {
                        Volatile.Write(ref _running, null);
                    }
                }
            }
        }
        finally
        {
            NativeMemory.Free(events);
        }
    }

    private IReadinessHandler? Registered(ulong token)
    {
        var table = Volatile.Read(ref _byToken);
        return token < (ulong)table.Length ? Volatile.Read(ref table[token]) : null;
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
