using System.Runtime.InteropServices;
using XenIo.Guest.Interop;

namespace XenIo.Guest.Blkfront.Fuse;

/// <summary>
/// A FUSE connection: opens /dev/fuse, mounts it (mount(2) type "fuse" with fd=, rootmode=40000,
/// user_id=0, group_id=0, allow_other) and serves it with a dedicated pool of worker threads, each
/// blocking in read() with its own buffers. Never served from the thread that attaches the loop
/// device: LOOP_CONFIGURE itself waits on FUSE requests. The connection ends when the file system
/// is gone (the kernel answers reads with ENODEV); <see cref="Dispose"/> unmounts and, if something
/// still holds the file, aborts the connection so no worker is left blocked.
/// </summary>
public sealed unsafe class FuseChannel : IDisposable
{
    private readonly FuseDiskHandler _handler;
    private readonly Thread[] _workers;
    private readonly string _mountPoint;
    private int _fd;
    private string? _connectionId;
    private int _disposed;
    private int _destroyed;

    private FuseChannel(int fd, string mountPoint, FuseDiskHandler handler, int threads)
    {
        _fd = fd;
        _mountPoint = mountPoint;
        _handler = handler;
        _workers = new Thread[threads];
    }

    /// <summary>Where the disk file is: <c>&lt;mount point&gt;/&lt;file name&gt;</c>.</summary>
    public string FilePath => Path.Combine(_mountPoint, _handler.FileName);

    public string MountPoint => _mountPoint;

    /// <summary>True once every worker has stopped (connection ended).</summary>
    public bool Stopped => _workers.All(t => t is null || !t.IsAlive);

    /// <summary>Mounts a one-file FUSE file system at <paramref name="mountPoint"/> (an existing, empty directory) and starts serving it.</summary>
    public static FuseChannel Mount(string mountPoint, FuseDiskHandler handler, int threads = 16)
    {
        ArgumentNullException.ThrowIfNull(handler);
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        mountPoint = Path.GetFullPath(mountPoint);
        int fd = Libc.Fuse.Open("/dev/fuse", Libc.Fuse.O_RDWR | Libc.Fuse.O_CLOEXEC, 0);
        if (fd < 0) throw new IOException($"/dev/fuse: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        var channel = new FuseChannel(fd, mountPoint, handler, threads);
        try
        {
            string options = $"fd={fd},rootmode=40000,user_id=0,group_id=0,allow_other";
            if (Libc.Fuse.Mount("xenio-blkfront", mountPoint, "fuse.xenio", Libc.Fuse.MS_NOSUID | Libc.Fuse.MS_NODEV, options) != 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                throw new IOException($"mount fuse at {mountPoint}: {Marshal.GetPInvokeErrorMessage(errno)}");
            }
            channel._connectionId = FindConnectionId(mountPoint);
            // Workers only now: reading /dev/fuse before mount(2) binds it fails with EPERM. The kernel
            // queued FUSE_INIT during mount, and every request waits for its answer.
            channel.StartWorkers();
            return channel;
        }
        catch
        {
            Libc.Fuse.Close(fd);
            throw;
        }
    }

    private void StartWorkers()
    {
        for (int i = 0; i < _workers.Length; i++)
        {
            _workers[i] = new Thread(Serve) { IsBackground = true, Name = $"blkfront-fuse-{i}" };
            _workers[i].Start();
        }
    }

    private void Serve()
    {
        using var buffers = new FuseBuffers(_handler.MaxWrite);
        var sink = new DeviceSink(this);
        while (Volatile.Read(ref _disposed) == 0 || Volatile.Read(ref _fd) >= 0)
        {
            int fd = Volatile.Read(ref _fd);
            if (fd < 0) return;
            nint n = Libc.Fuse.Read(fd, buffers.RequestPointer, (nuint)buffers.Request.Length);
            if (n < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                // ENOENT: the request was interrupted before we read it. EINTR/EAGAIN: try again.
                if (errno is Libc.Fuse.EINTR or Libc.Fuse.EAGAIN or Libc.Fuse.ENOENT) continue;
                // ENODEV: unmounted and gone, or aborted. Anything else: the connection is unusable.
                if (errno != Libc.Fuse.ENODEV) _handler.Log?.Invoke($"fuse: read from /dev/fuse: {Marshal.GetPInvokeErrorMessage(errno)}");
                return;
            }
            if (_handler.Handle((int)n, buffers, sink) == FuseHandled.Destroy)
                Volatile.Write(ref _destroyed, 1);
        }
    }

    private sealed class DeviceSink(FuseChannel channel) : IFuseReplySink
    {
        public void Reply(ulong unique, int error, ReadOnlySpan<byte> body, ReadOnlySpan<byte> data)
        {
            var header = new FuseOutHeader { Len = (uint)(16 + body.Length + data.Length), Error = error, Unique = unique };
            fixed (byte* pb = body, pd = data)
            {
                var iov = stackalloc Libc.Fuse.IoVec[3];
                iov[0] = new Libc.Fuse.IoVec { Base = &header, Length = 16 };
                iov[1] = new Libc.Fuse.IoVec { Base = pb, Length = (nuint)body.Length };
                iov[2] = new Libc.Fuse.IoVec { Base = pd, Length = (nuint)data.Length };
                while (true)
                {
                    int fd = Volatile.Read(ref channel._fd);
                    if (fd < 0) return;
                    if (Libc.Fuse.WriteV(fd, iov, 3) >= 0) return;
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == Libc.Fuse.EINTR) continue;
                    // ENOENT: the request was interrupted and is gone; ENODEV: the connection ended. Both are normal.
                    if (errno is not (Libc.Fuse.ENOENT or Libc.Fuse.ENODEV))
                        channel._handler.Log?.Invoke($"fuse: reply to {unique}: {Marshal.GetPInvokeErrorMessage(errno)}");
                    return;
                }
            }
        }
    }

    /// <summary>Waits until every worker has stopped (the file system is gone and the kernel ended the connection).</summary>
    public bool WaitStopped(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        foreach (var t in _workers)
        {
            if (t is null) continue;
            var left = deadline - DateTime.UtcNow;
            if (left < TimeSpan.Zero || !t.Join(left)) return false;
        }
        return true;
    }

    /// <summary>Unmounts (lazily if busy): the connection ends when the last user of the file lets go.</summary>
    public void Unmount()
    {
        if (Libc.Fuse.Umount2(_mountPoint, 0) == 0) return;
        int errno = Marshal.GetLastPInvokeError();
        if (errno == Libc.Fuse.EBUSY) Libc.Fuse.Umount2(_mountPoint, Libc.Fuse.MNT_DETACH);
    }

    /// <summary>Ends the connection now through /sys/fs/fuse/connections/N/abort: every pending and future request fails.</summary>
    public void Abort()
    {
        if (_connectionId is null) return;
        const string control = "/sys/fs/fuse/connections";
        // fusectl is not always mounted (no systemd here); mount it to reach the abort switch.
        if (Directory.Exists(control) && !Directory.Exists($"{control}/{_connectionId}"))
            Libc.Fuse.Mount("fusectl", control, "fusectl", 0, "");
        try { File.WriteAllText($"{control}/{_connectionId}/abort", "1"); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        Unmount();
        if (!WaitStopped(TimeSpan.FromSeconds(5)))
        {
            _handler.Log?.Invoke($"fuse: {_mountPoint} still in use after unmount; aborting the connection");
            Abort();
            WaitStopped(TimeSpan.FromSeconds(5));
        }
        int fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0) Libc.Fuse.Close(fd);
    }

    // The connection's directory under /sys/fs/fuse/connections is named by the minor device number
    // of the mount, which /proc/self/mountinfo gives as "major:minor" in its third field.
    private static string? FindConnectionId(string mountPoint)
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/mountinfo"))
            {
                var f = line.Split(' ');
                if (f.Length > 4 && UnescapeMountPath(f[4]) == mountPoint)
                {
                    var dev = f[2].Split(':');
                    if (dev.Length == 2) return dev[1];
                }
            }
        }
        catch (IOException) { }
        return null;
    }

    internal static string UnescapeMountPath(string s) =>
        s.Replace("\\040", " ", StringComparison.Ordinal).Replace("\\011", "\t", StringComparison.Ordinal)
         .Replace("\\012", "\n", StringComparison.Ordinal).Replace("\\134", "\\", StringComparison.Ordinal);
}
