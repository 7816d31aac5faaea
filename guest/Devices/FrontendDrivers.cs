namespace XenIo.Guest.Devices;

/// <summary>
/// The frontends the agent runs once xenstore is up, in the order they start. Each is independent: one
/// failing does not stop the others (see <see cref="IFrontendDriver"/>).
/// </summary>
internal static class FrontendDrivers
{
    public static IReadOnlyList<IFrontendDriver> Create() =>
    [
        new Netfront.NetfrontDriver(),
        new Blkfront.BlkfrontDriver(),
        new Balloon.BalloonDriver(),
    ];

    /// <summary>Starts every driver on the thread pool; each logs its own end.</summary>
    public static IReadOnlyList<Task> Start(FrontendContext context, IReadOnlyList<IFrontendDriver> drivers, CancellationToken stop)
    {
        var tasks = new List<Task>(drivers.Count);
        foreach (var driver in drivers)
        {
            tasks.Add(Task.Run(async () =>
            {
                try { await driver.RunAsync(context, stop).ConfigureAwait(false); }
                catch (OperationCanceledException) when (stop.IsCancellationRequested) { }
                catch (Exception e) { context.Log($"{driver.Name}: stopped: {e.Message}"); }
            }, CancellationToken.None));
        }
        return tasks;
    }
}
