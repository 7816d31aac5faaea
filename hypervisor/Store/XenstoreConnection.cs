using Microsoft.Extensions.Logging;
using XenIo.Hypervisor.Store.Transports;

namespace XenIo.Hypervisor.Store;

/// <summary>
/// One client of the daemon: dom0 over the Unix socket, or an introduced domain over its ring. Its
/// identity (<see cref="DomId"/>) comes from the transport, never from what the client says. It frames
/// requests off the stream, hands each to <see cref="Xenstored"/>, and flushes replies and events.
/// </summary>
public sealed class XenstoreConnection : IThreadPoolWorkItem
{
    private readonly Xenstored _daemon;
    private readonly IXenstoreStream _stream;
    private readonly ILogger _logger;
    private int _closed;

    internal XenstoreConnection(Xenstored daemon, IXenstoreStream stream, ushort domId, ILogger logger)
    {
        _daemon = daemon;
        _stream = stream;
        _logger = logger;
        DomId = domId;
        IsPrivileged = domId == 0;
        DomainPath = XenstorePath.DomainPath(domId);
        var q = daemon.Quota;
        Output = new XenstoreOutput(IsPrivileged ? q.PrivilegedOutstanding : q.Outstanding, q.PendingEvents, q.PendingEventsPerWatch);
    }

    public ushort DomId { get; }
    public bool IsPrivileged { get; }
    public string DomainPath { get; }
    public string Describe => $"{_stream.Describe} dom{DomId}";

    /// <summary>Watch events dropped because the connection did not take them (XSA-349).</summary>
    public long DroppedEvents => Output.DroppedEvents;

    internal XenstoreOutput Output { get; }
    internal List<XenstoreWatch> Watches { get; } = [];
    internal Dictionary<uint, XenstoreTransaction> Transactions { get; } = [];
    internal uint NextTransactionId = 1;

    /// <summary>Where a reply is composed: header then up to XENSTORE_PAYLOAD_MAX bytes.</summary>
    internal byte[] ReplyBuffer { get; } = new byte[XsdCodec.MaxMessage];

    internal bool IsClosed => Volatile.Read(ref _closed) != 0;

    /// <summary>Reads and answers requests until the peer goes or the connection is closed.</summary>
    internal async Task RunAsync(CancellationToken cancellationToken)
    {
        var buffer = new byte[2 * XsdCodec.MaxMessage];
        int start = 0, end = 0;
        try
        {
            while (!IsClosed)
            {
                while (end - start >= XsdCodec.HeaderSize)
                {
                    var header = XsdCodec.ReadHeader(buffer.AsSpan(start));
                    if (header.Len > Abi.XenstoreLimits.PayloadMax)
                    {
                        _logger.LogWarning("xenstored: {Conn} sent a {Len}-byte payload; disconnecting", Describe, header.Len);
                        return;
                    }
                    var total = XsdCodec.HeaderSize + (int)header.Len;
                    if (end - start < total) break;
                    _daemon.Process(this, header, buffer.AsSpan(start + XsdCodec.HeaderSize, (int)header.Len));
                    start += total;
                    if (IsClosed) return;
                    if (Output.IsBackedUp) await DrainAsync().ConfigureAwait(false);
                }
                if (start == end) start = end = 0;
                else if (start > 0 && buffer.Length - end < XsdCodec.MaxMessage)
                {
                    buffer.AsSpan(start, end - start).CopyTo(buffer);
                    end -= start;
                    start = 0;
                }
                // Everything complete has been answered: send it before waiting for more.
                if (Output.TryBeginFlush()) await Output.FlushAsync(_stream).ConfigureAwait(false);
                var n = await _stream.ReadAsync(buffer.AsMemory(end), cancellationToken).ConfigureAwait(false);
                if (n <= 0) return;
                end += n;
            }
        }
        catch (OperationCanceledException) { }
        catch (Exception e)
        {
            _logger.LogWarning("xenstored: {Conn} dropped: {Reason}", Describe, e.Message);
        }
        finally
        {
            Close();
        }
    }

    // Too many replies wait for a peer that does not read: flush ourselves, or wait for the flusher.
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask DrainAsync()
    {
        while (Output.IsBackedUp && !IsClosed)
        {
            if (Output.TryBeginFlush()) await Output.FlushAsync(_stream).ConfigureAwait(false);
            else if (!await Output.WaitDrainedAsync().ConfigureAwait(false)) return;
        }
    }

    /// <summary>Starts a flush on the thread pool (watch events raised by another connection's request).</summary>
    internal void ScheduleFlush()
    {
        if (Output.TryBeginFlush()) ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
    }

    void IThreadPoolWorkItem.Execute() => _ = Output.FlushAsync(_stream).AsTask();

    /// <summary>Ends the connection: forgets its watches and transactions, stops its stream.</summary>
    public void Close()
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0) return;
        _daemon.Forget(this);
        Output.Close();
        _stream.Abort();
    }
}
