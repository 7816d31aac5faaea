using XenIo.Guest.Init;

namespace XenIo.Guest.Consoles;

/// <summary>
/// Connects init's terminal to something outside: the PV console ring (the console frontend), or the
/// debug console socket. <see cref="Run"/> moves bytes until the pty hangs up (every holder of the slave
/// is gone) and returns; it runs on a thread of its own.
/// </summary>
public interface IConsoleFrontend
{
    void Run(IPtyMaster master, CancellationToken stop);
}

/// <summary>Reads and drops init's output when no console is attached, so init never blocks on a full pty.</summary>
public sealed class DiscardConsole : IConsoleFrontend
{
    public void Run(IPtyMaster master, CancellationToken stop)
    {
        var buffer = new byte[4096];
        while (!stop.IsCancellationRequested && master.Read(buffer) > 0) { }
    }
}
