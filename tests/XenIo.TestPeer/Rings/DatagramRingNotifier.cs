using System.Net.Sockets;
using XenIo.Hypervisor.Rings;

namespace XenIo.TestPeer.Rings;

/// <summary>
/// An <see cref="IRingNotifier"/> between two OS processes over a pair of bound Unix datagram
/// sockets, standing in for an event channel. A send that finds the peer's queue full is dropped:
/// notifications already pending wake the peer just the same, as an event channel's pending bit does.
/// </summary>
public sealed class DatagramRingNotifier : IRingNotifier, IDisposable
{
    private readonly Socket _socket;
    private readonly byte[] _scratch = new byte[16];

    private DatagramRingNotifier(Socket socket) => _socket = socket;

    /// <summary>Notifications sent (<see cref="Notify"/> calls).</summary>
    public long Sent { get; private set; }

    /// <summary>Datagrams taken off the socket by <see cref="Wait"/> (≤ the peer's <see cref="Sent"/>).</summary>
    public long Received { get; private set; }

    /// <summary>Times <see cref="Wait"/> actually blocked.</summary>
    public long Waits { get; private set; }

    public static DatagramRingNotifier Bind(string localPath)
    {
        File.Delete(localPath);
        var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(localPath));
            socket.Blocking = false;
            return new DatagramRingNotifier(socket);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Sends every later notification to the socket bound at <paramref name="peerPath"/>.</summary>
    public void Connect(string peerPath) => _socket.Connect(new UnixDomainSocketEndPoint(peerPath));

    public void Notify()
    {
        Sent++;
        _socket.Send(_scratch.AsSpan(0, 1), SocketFlags.None, out _);
    }

    public bool Wait(int timeoutMilliseconds)
    {
        Waits++;
        if (!Drain() && !(_socket.Poll(timeoutMilliseconds < 0 ? -1 : timeoutMilliseconds * 1000, SelectMode.SelectRead) && Drain()))
            return false;
        return true;
    }

    private bool Drain()
    {
        bool any = false;
        while (_socket.Receive(_scratch, 0, _scratch.Length, SocketFlags.None, out var error) > 0 && error == SocketError.Success)
        {
            Received++;
            any = true;
        }
        return any;
    }

    public void Dispose() => _socket.Dispose();
}
