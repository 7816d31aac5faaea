using System.Net.Sockets;

namespace XenIo.Hypervisor.Store.Transports;

/// <summary>A connected stream socket (the Unix socket <c>&lt;run&gt;/xenstored/socket</c>) as a xenstore stream.</summary>
public sealed class SocketXenstoreStream(Socket socket, string describe = "socket") : IXenstoreStream
{
    private int _aborted;

    public Socket Socket => socket;
    public string Describe => describe;

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _aborted) != 0) return 0;
        try
        {
            return await socket.ReceiveAsync(buffer, SocketFlags.None, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return 0;
        }
    }

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        while (data.Length > 0)
        {
            var n = await socket.SendAsync(data, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            if (n <= 0) throw new IOException("socket closed");
            data = data[n..];
        }
    }

    public void Abort()
    {
        if (Interlocked.Exchange(ref _aborted, 1) != 0) return;
        try { socket.Shutdown(SocketShutdown.Both); } catch (SocketException) { } catch (ObjectDisposedException) { }
        socket.Dispose();
    }

    public ValueTask DisposeAsync()
    {
        Abort();
        return ValueTask.CompletedTask;
    }
}
