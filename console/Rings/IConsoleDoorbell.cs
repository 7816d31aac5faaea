namespace XenIo.Consoled.Rings;

/// <summary>
/// The console's event channel as the backend sees it: <see cref="Notify"/> kicks the guest,
/// <see cref="WaitAsync"/> completes when the guest has kicked us since the last wait (kicks coalesce,
/// as pending bits do). The hypervisor core provides the real one; <see cref="LocalDoorbell"/> joins
/// two ends inside one process.
/// </summary>
public interface IConsoleDoorbell
{
    void Notify();

    ValueTask WaitAsync(CancellationToken cancellationToken);
}
