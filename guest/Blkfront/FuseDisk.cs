using XenIo.Guest.Blkfront.Fuse;
using XenIo.Guest.Blkfront.Loop;

namespace XenIo.Guest.Blkfront;

/// <summary>How blkfront exposes a disk inside the guest.</summary>
public sealed record FuseDiskOptions
{
    /// <summary>Name of the one file in the FUSE mount.</summary>
    public string FileName { get; init; } = "disk";

    /// <summary>Worker threads serving /dev/fuse: the most requests in flight towards the device.</summary>
    public int Threads { get; init; } = 16;

    /// <summary>Largest READ/WRITE the kernel sends (128 KiB..1 MiB).</summary>
    public int MaxWrite { get; init; } = 256 * 1024;

    /// <summary>FUSE max_background: the kernel's default 12 would cap the loop device's queue depth.</summary>
    public ushort MaxBackground { get; init; } = 64;

    public Action<string>? Log { get; init; }
}

/// <summary>
/// A disk as ordinary tools in the guest use it: <see cref="IBlockDevice"/> served as a file through
/// FUSE at <c>&lt;mount point&gt;/disk</c>, attached to a loop device with direct I/O and autoclear.
/// <c>mkfs.ext4</c>, <c>mount</c>, <c>dd</c> and <c>fio</c> then work on <see cref="DevicePath"/>.
/// The agent mounts it inside the guest's own mount namespace, so a dead agent leaves no stale mount on the host.
/// </summary>
public sealed class FuseDisk : IDisposable
{
    private readonly FuseChannel _channel;
    private readonly LoopDevice _loop;
    private int _disposed;

    private FuseDisk(FuseChannel channel, LoopDevice loop)
    {
        _channel = channel;
        _loop = loop;
    }

    /// <summary>The guest's block device (e.g. /dev/loop3).</summary>
    public string DevicePath => _loop.DevicePath;

    /// <summary>The FUSE file behind it.</summary>
    public string FilePath => _channel.FilePath;

    public LoopDevice Loop => _loop;
    public FuseChannel Channel => _channel;

    /// <summary>Mounts the FUSE file at <paramref name="mountPoint"/> (an empty directory) and attaches a loop device to it.</summary>
    public static FuseDisk Attach(IBlockDevice device, string mountPoint, FuseDiskOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        options ??= new FuseDiskOptions();
        var handler = new FuseDiskHandler(device, options.FileName, options.MaxWrite, options.MaxBackground) { Log = options.Log };
        var channel = FuseChannel.Mount(mountPoint, handler, options.Threads);
        try
        {
            // This thread is not a FUSE worker: LOOP_CONFIGURE waits on the workers' answers.
            var loop = LoopDevice.Attach(channel.FilePath, device.SectorSize, device.ReadOnly);
            return new FuseDisk(channel, loop);
        }
        catch
        {
            channel.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Detaches the loop device (immediately if nothing mounts it) and unmounts the FUSE file system.
    /// A file system still mounted from the loop device keeps both alive until it is unmounted.
    /// </summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _loop.Detach(TimeSpan.FromSeconds(10));
        _channel.Dispose();
    }
}
