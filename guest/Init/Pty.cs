using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using static XenIo.Guest.Interop.Libc;

namespace XenIo.Guest.Init;

/// <summary>
/// The master side of init's terminal, for a console frontend to move bytes through. Reads return 0
/// once no process holds the slave any more (the kernel reports EIO then).
/// </summary>
public interface IPtyMaster
{
    /// <summary>Blocks until output from the guest side is available; 0 at hang-up.</summary>
    int Read(Span<byte> buffer);

    /// <summary>Writes input for the guest side (keyboard bytes).</summary>
    void Write(ReadOnlySpan<byte> data);
}

/// <summary>
/// A pseudo-terminal from the guest's own devpts instance (posix_openpt, grantpt, unlockpt, ptsname as
/// ioctls on /dev/pts/ptmx). init opens the slave by path after setsid, which makes it init's
/// controlling terminal.
/// </summary>
public sealed class Pty : IPtyMaster, IDisposable
{
    private readonly SafeFileHandle _master;

    private Pty(SafeFileHandle master, string slavePath)
    {
        _master = master;
        SlavePath = slavePath;
    }

    public string SlavePath { get; }

    public SafeFileHandle Master => _master;

    public static unsafe Pty Open(string ptmx = "/dev/pts/ptmx")
    {
        var fd = Interop.Libc.Open(ptmx, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (fd < 0) throw new IOException($"open {ptmx}: {Marshal.GetLastPInvokeErrorMessage()}");
        var master = new SafeFileHandle(fd, ownsHandle: true);
        try
        {
            var unlock = 0;
            if (Ioctl(fd, TIOCSPTLCK, &unlock) != 0) throw new IOException($"unlockpt: {Marshal.GetLastPInvokeErrorMessage()}");
            uint n;
            if (Ioctl(fd, TIOCGPTN, &n) != 0) throw new IOException($"ptsname: {Marshal.GetLastPInvokeErrorMessage()}");
            // grantpt has nothing to do on devpts: the slave's owner and mode come from the mount options.
            var winsize = stackalloc ushort[4] { 24, 80, 0, 0 };
            Ioctl(fd, TIOCSWINSZ, winsize);
            var dir = Path.GetDirectoryName(ptmx)!;
            return new Pty(master, Path.Combine(dir, n.ToString(CultureInfo.InvariantCulture)));
        }
        catch
        {
            master.Dispose();
            throw;
        }
    }

    public unsafe int Read(Span<byte> buffer)
    {
        fixed (byte* p = buffer)
            while (true)
            {
                var n = Interop.Libc.Read(Fd, p, (nuint)buffer.Length);
                if (n >= 0) return (int)n;
                var err = Marshal.GetLastPInvokeError();
                if (err == EINTR) continue;
                if (err == EIO) return 0;
                throw new IOException($"pty read: {Marshal.GetPInvokeErrorMessage(err)}");
            }
    }

    public unsafe void Write(ReadOnlySpan<byte> data)
    {
        fixed (byte* p = data)
        {
            var done = 0;
            while (done < data.Length)
            {
                var n = Interop.Libc.Write(Fd, p + done, (nuint)(data.Length - done));
                if (n < 0)
                {
                    if (Marshal.GetLastPInvokeError() == EINTR) continue;
                    throw new IOException($"pty write: {Marshal.GetLastPInvokeErrorMessage()}");
                }
                done += (int)n;
            }
        }
    }

    private int Fd => (int)_master.DangerousGetHandle();

    public void Dispose() => _master.Dispose();
}
