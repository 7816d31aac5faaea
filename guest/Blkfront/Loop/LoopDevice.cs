using System.Runtime.InteropServices;
using XenIo.Guest.Interop;

namespace XenIo.Guest.Blkfront.Loop;

/// <summary>
/// A loop device bound to a file with direct I/O and autoclear, configured with one LOOP_CONFIGURE
/// ioctl (what <c>losetup --find --show --direct-io=on</c> does, plus LO_FLAGS_AUTOCLEAR, which
/// losetup has no switch for). We keep the loop device open while attached; when we close it and
/// nothing else (a mount) holds it, the kernel detaches it by itself, so an agent that dies leaves no
/// loop device behind. The guest's disk is the loop device itself (<see cref="DevicePath"/>,
/// e.g. /dev/loop3); an <c>xvda</c> name is a symlink the agent may add inside the guest's /dev.
/// </summary>
public sealed unsafe class LoopDevice : IDisposable
{
    private int _loopFd;

    private LoopDevice(int loopFd, int number, string backingFile)
    {
        _loopFd = loopFd;
        Number = number;
        BackingFile = backingFile;
    }

    public int Number { get; }
    public string DevicePath => $"/dev/loop{Number}";
    public string BackingFile { get; }

    /// <summary>True while the kernel still has the device bound to a file.</summary>
    public bool IsBound => File.Exists($"/sys/block/loop{Number}/loop/backing_file");

    /// <summary>
    /// Binds a free loop device to <paramref name="file"/>. Call it on a thread that does not serve
    /// the file's FUSE connection: the kernel asks FUSE for the file's attributes meanwhile.
    /// </summary>
    public static LoopDevice Attach(string file, int blockSize = 512, bool readOnly = false, bool directIo = true)
    {
        int backing = Libc.Fuse.Open(file, (readOnly ? Libc.Fuse.O_RDONLY : Libc.Fuse.O_RDWR) | Libc.Fuse.O_CLOEXEC | (directIo ? Libc.Fuse.O_DIRECT : 0), 0);
        if (backing < 0) throw new IOException($"{file}: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        try
        {
            int control = Libc.Fuse.Open("/dev/loop-control", Libc.Fuse.O_RDWR | Libc.Fuse.O_CLOEXEC, 0);
            if (control < 0) throw new IOException($"/dev/loop-control: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
            try
            {
                // Another process may take the free device between GET_FREE and CONFIGURE (EBUSY): take the next.
                for (int attempt = 0; attempt < 16; attempt++)
                {
                    int number = Libc.Fuse.IoctlValue(control, Libc.Fuse.LOOP_CTL_GET_FREE, 0);
                    if (number < 0) throw new IOException($"no free loop device: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
                    int loopFd = Libc.Fuse.Open($"/dev/loop{number}", (readOnly ? Libc.Fuse.O_RDONLY : Libc.Fuse.O_RDWR) | Libc.Fuse.O_CLOEXEC, 0);
                    if (loopFd < 0)
                    {
                        // udev-less containers: the node may not exist yet for a device the kernel just made.
                        throw new IOException($"/dev/loop{number}: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
                    }
                    var config = new Libc.Fuse.LoopConfig
                    {
                        Fd = (uint)backing,
                        BlockSize = (uint)blockSize,
                        Flags = Libc.Fuse.LO_FLAGS_AUTOCLEAR | (directIo ? Libc.Fuse.LO_FLAGS_DIRECT_IO : 0) | (readOnly ? Libc.Fuse.LO_FLAGS_READ_ONLY : 0),
                    };
                    var name = System.Text.Encoding.UTF8.GetBytes(file);
                    int copy = Math.Min(name.Length, 63);
                    for (int i = 0; i < copy; i++) config.FileName[i] = name[i];
                    if (Libc.Fuse.Ioctl(loopFd, Libc.Fuse.LOOP_CONFIGURE, &config) == 0)
                        return new LoopDevice(loopFd, number, file);
                    int errno = Marshal.GetLastPInvokeError();
                    Libc.Fuse.Close(loopFd);
                    if (errno != Libc.Fuse.EBUSY)
                        throw new IOException($"LOOP_CONFIGURE /dev/loop{number} on {file}: {Marshal.GetPInvokeErrorMessage(errno)}");
                }
                throw new IOException("no free loop device after 16 attempts");
            }
            finally
            {
                Libc.Fuse.Close(control);
            }
        }
        finally
        {
            // The loop device holds its own reference to the file now.
            Libc.Fuse.Close(backing);
        }
    }

    /// <summary>Lets go of the device; with autoclear the kernel detaches it once no mount holds it. Waits for that up to <paramref name="timeout"/>.</summary>
    public bool Detach(TimeSpan timeout)
    {
        int fd = Interlocked.Exchange(ref _loopFd, -1);
        if (fd >= 0)
        {
            // LOOP_CLR_FD detaches now if we are the only opener, else marks it autoclear (already set).
            Libc.Fuse.IoctlValue(fd, Libc.Fuse.LOOP_CLR_FD, 0);
            Libc.Fuse.Close(fd);
        }
        var deadline = DateTime.UtcNow + timeout;
        while (IsBound)
        {
            if (DateTime.UtcNow > deadline) return false;
            Thread.Sleep(10);
        }
        return true;
    }

    public void Dispose() => Detach(TimeSpan.FromSeconds(5));
}
