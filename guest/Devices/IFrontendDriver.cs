namespace XenIo.Guest.Devices;

/// <summary>
/// A frontend the agent runs for the life of the domain (netfront, blkfront, the console frontend, the
/// balloon driver): started once the store ring is up, it watches its part of xenstore and serves its
/// devices until <paramref name="stop"/> fires. A driver that fails logs one line and ends; the domain
/// keeps running without it, as a Linux guest keeps running when one driver fails to probe.
/// </summary>
public interface IFrontendDriver
{
    /// <summary>Short name for the log (<c>netfront</c>, <c>blkfront</c>, …).</summary>
    string Name { get; }

    Task RunAsync(FrontendContext context, CancellationToken stop);
}
