using XenIo.Guest.Blkfront.Fuse;
using XenIo.Guest.Blkfront.Ring;
using XenIo.Guest.Devices;

namespace XenIo.Guest.Blkfront;

/// <summary>
/// The agent's blkfront: for every <c>device/vbd/&lt;n&gt;</c> (at boot and when <c>xenio block-attach</c>
/// adds one), connects a <see cref="BlkfrontDevice"/> and makes it a disk the guest's tools can use:
/// served as a file through FUSE under <c>/run/xenio/vbd/&lt;name&gt;.fuse/disk</c> (mounted in the guest's
/// own mount namespace: /run is the guest's tmpfs), attached to a loop device with direct I/O, and named
/// by a symlink <c>/run/xenio/vbd/&lt;name&gt;</c> (xvda, xvdb, … from virtual-device) to that loop device.
/// The guest shares the host's /dev, so no node is created there: the loop device itself is the disk.
/// Under <c>isolation=userns</c> there is no loop device (that needs host root): the symlink points at
/// the FUSE file, a plain file the guest's tools (mkfs.ext4, dd, fio, mount -o loop where allowed) use.
/// <c>block-detach</c> removing the node detaches the loop device, unmounts and closes the vbd.
/// </summary>
internal sealed class BlkfrontDriver : IFrontendDriver
{
    public const string Root = "/run/xenio/vbd";

    private readonly Dictionary<int, Attached> _disks = [];

    public string Name => "blkfront";

    private sealed record Attached(BlkfrontDevice Device, IDisposable? Disk, string Link);

    public async Task RunAsync(FrontendContext context, CancellationToken stop)
    {
        Directory.CreateDirectory(Root);
        var watcher = new XenbusDeviceWatcher(context, "vbd");
        try
        {
            await watcher.RunAsync(devid => AttachAsync(context, devid, stop), devid => DetachAsync(context, devid), stop).ConfigureAwait(false);
        }
        finally
        {
            foreach (var devid in _disks.Keys.ToList()) await DetachAsync(context, devid).ConfigureAwait(false);
        }
    }

    /// <summary>Linux's names for xvd numbers: 202&lt;&lt;8 | disk&lt;&lt;4 | part, or 1&lt;&lt;28 | disk&lt;&lt;8 | part for disk ≥ 16.</summary>
    public static string DiskName(int devid)
    {
        int disk = (devid & (1 << 28)) != 0 ? (devid >> 8) & 0xFFFFF : (devid >> 8) == 202 ? (devid >> 4) & 0xF : -1;
        if (disk < 0) return $"vbd{devid}";
        var letters = "";
        for (int n = disk; ; n = n / 26 - 1)
        {
            letters = (char)('a' + n % 26) + letters;
            if (n < 26) break;
        }
        return "xvd" + letters;
    }

    private async Task AttachAsync(FrontendContext context, int devid, CancellationToken stop)
    {
        var dev = await XenbusDevice.ProbeAsync(context, "vbd", devid, stop).ConfigureAwait(false);
        if (dev is null) return;
        BlkfrontDevice front;
        try
        {
            front = await BlkfrontDevice.ConnectAsync(context.Domain, context.Store, dev.FrontendPath, dev.BackendPath, dev.BackendId,
                new BlkfrontOptions { RingPageOrder = 0 }, m => context.Log($"blkfront: {m}"), stop).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or InvalidOperationException && !stop.IsCancellationRequested)
        {
            context.Log($"blkfront: {dev}: not connected: {e.Message}");
            return;
        }
        string name = DiskName(devid);
        string mount = Path.Combine(Root, name + ".fuse");
        string link = Path.Combine(Root, name);
        IDisposable? disk = null;
        try
        {
            Directory.CreateDirectory(mount);
            string target;
            var fuseOptions = new FuseDiskOptions { Threads = 16, MaxWrite = 1 << 20, MaxBackground = 64, Log = m => context.Log($"blkfront {name}: {m}") };
            if (context.Config.Userns)
            {
                var handler = new FuseDiskHandler(front, fuseOptions.FileName, fuseOptions.MaxWrite, fuseOptions.MaxBackground) { Log = fuseOptions.Log };
                var channel = FuseChannel.Mount(mount, handler, fuseOptions.Threads);
                disk = channel;
                target = channel.FilePath;
            }
            else
            {
                var fuse = FuseDisk.Attach(front, mount, fuseOptions);
                disk = fuse;
                target = fuse.DevicePath;
            }
            File.Delete(link);
            File.CreateSymbolicLink(link, target);
            context.Log($"blkfront: {dev} is {link} -> {target} ({front.SizeBytes >> 20} MiB{(front.ReadOnly ? ", read-only" : "")})");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOperationException)
        {
            context.Log($"blkfront: {dev}: connected but not exposed: {e.Message}");
        }
        _disks[devid] = new Attached(front, disk, link);
    }

    private async Task DetachAsync(FrontendContext context, int devid)
    {
        if (!_disks.Remove(devid, out var a)) return;
        try { File.Delete(a.Link); } catch (IOException) { }
        a.Disk?.Dispose();
        await a.Device.DisposeAsync().ConfigureAwait(false);
        context.Log($"blkfront: vbd/{devid} detached");
    }
}
