using System.Net.Sockets;
using XenIo.Guest.Init;

namespace XenIo.Guest.Consoles;

/// <summary>
/// The debug console (<c>--console-fd N</c>, or <c>console_fd</c> in the configuration): init's terminal
/// bridged to a connected stream socket the agent inherited. Output goes to the socket until the pty
/// hangs up, then the socket's sending side is shut so the reader sees end of file; bytes from the
/// socket are typed into the terminal.
/// </summary>
public sealed class SocketConsole(int fd) : IConsoleFrontend
{
    public void Run(IPtyMaster master, CancellationToken stop)
    {
        using var socket = new Socket(new SafeSocketHandle(fd, ownsHandle: true));
        var input = Task.Run(() => Input(socket, master, stop), CancellationToken.None);
        var buffer = new byte[4096];
        try
        {
            int n;
            while ((n = master.Read(buffer)) > 0)
                socket.SendAsync(buffer.AsMemory(0, n), SocketFlags.None, stop).AsTask().GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or IOException)
        {
        }
        try { socket.Shutdown(SocketShutdown.Send); }
        catch (SocketException) { }
    }

    private static async Task Input(Socket socket, IPtyMaster master, CancellationToken stop)
    {
        var buffer = new byte[1024];
        try
        {
            int n;
            while ((n = await socket.ReceiveAsync(buffer, SocketFlags.None, stop).ConfigureAwait(false)) > 0)
                master.Write(buffer.AsSpan(0, n));
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or IOException or ObjectDisposedException)
        {
        }
    }
}
