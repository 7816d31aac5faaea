using System.Buffers;
using System.IO.MemoryMappedFiles;
using System.Net.Sockets;
using XenIo.Hypervisor.Store.Transports;

namespace XenIo.TestPeer.Store;

/// <summary>A 4 KiB file mapped shared into this process: the xenstore ring page both processes see.</summary>
public sealed unsafe class SharedPage : MemoryManager<byte>
{
    public const int Size = 4096;
    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _pointer;

    public SharedPage(string path)
    {
        _file = MemoryMappedFile.CreateFromFile(path, FileMode.OpenOrCreate, null, Size, MemoryMappedFileAccess.ReadWrite);
        _view = _file.CreateViewAccessor(0, Size, MemoryMappedFileAccess.ReadWrite);
        byte* p = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        _pointer = p + _view.PointerOffset;
    }

    public override Span<byte> GetSpan() => new(_pointer, Size);
    public override MemoryHandle Pin(int elementIndex = 0) => new(_pointer + elementIndex);
    public override void Unpin() { }

    protected override void Dispose(bool disposing)
    {
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _file.Dispose();
    }
}

/// <summary>
/// An event channel end between two processes for tests: a Unix datagram socket bound at one path that
/// notifies the socket bound at the other; one datagram is one kick.
/// </summary>
public sealed class DatagramDoorbell : IEventChannelDoorbell
{
    private readonly Socket _socket;
    private readonly UnixDomainSocketEndPoint _remote;
    private readonly CancellationTokenSource _closed = new();
    private readonly byte[] _kick = [1];
    private readonly byte[] _receive = new byte[64];

    public DatagramDoorbell(string localPath, string remotePath)
    {
        if (File.Exists(localPath)) File.Delete(localPath);
        _socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        _socket.Bind(new UnixDomainSocketEndPoint(localPath));
        _socket.Blocking = false; // a full queue already means the peer will wake
        _remote = new UnixDomainSocketEndPoint(remotePath);
    }

    public void Notify()
    {
        // A kick to a peer not yet bound, or whose queue is full, is not lost in effect: the peer re-reads
        // the indices whenever it next wakes, as an event channel's pending bit would make it.
        try { _socket.SendTo(_kick, SocketFlags.None, _remote); }
        catch (SocketException) { }
        catch (ObjectDisposedException) { }
    }

    public async ValueTask<bool> WaitAsync(CancellationToken cancellationToken)
    {
        try
        {
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _closed.Token);
            await _socket.ReceiveAsync(_receive, SocketFlags.None, linked.Token);
            return true;
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            return false;
        }
    }

    public void Dispose()
    {
        _closed.Cancel();
        _socket.Dispose();
    }
}
