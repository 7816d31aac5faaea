namespace XenIo.Blkback.Daemon;

public sealed class BlkbackOptions
{
    /// <summary>Run directory: xenstored's socket <c>&lt;run&gt;/xenstored/socket</c>, hyperd's <c>&lt;run&gt;/hypercall.sock</c>, ours <c>&lt;run&gt;/blkback.sock</c>.</summary>
    public string RunDirectory { get; set; } = XenIo.Hypervisor.Store.XenstoredOptions.DefaultRunDirectory();

    /// <summary>Open images with O_DIRECT (bypass the host page cache).</summary>
    public bool Direct { get; set; }

    /// <summary>Logical sector size every vbd offers (512 or 4096).</summary>
    public int SectorSize { get; set; } = 512;

    /// <summary><c>multi-queue-max-queues</c>.</summary>
    public int MaxQueues { get; set; } = 4;

    /// <summary>Offer feature-persistent (grants mapped once, I/O straight into the guest's pages); off: grant copy for every request.</summary>
    public bool PersistentGrants { get; set; } = true;

    /// <summary>I/O workers per ring: how many of its requests can be on the disk at once.</summary>
    public int IoWorkersPerQueue { get; set; } = 32;

    /// <summary>How long to wait for xenstored and hyperd at start (xenio up starts them together).</summary>
    public TimeSpan StartWait { get; set; } = TimeSpan.FromSeconds(15);

    public static string StatusSocketPath(string runDirectory) => Path.Combine(runDirectory, "blkback.sock");
}
