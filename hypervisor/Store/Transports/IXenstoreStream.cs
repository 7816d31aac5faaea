namespace XenIo.Hypervisor.Store.Transports;

/// <summary>
/// A byte stream carrying xenstore messages between the daemon and one peer: a Unix socket or a
/// domain's xenstore ring. Transports only move bytes; framing and parsing live in the connection.
/// </summary>
public interface IXenstoreStream : IAsyncDisposable
{
    /// <summary>Reads what is available (at least one byte); 0 when the peer has gone.</summary>
    ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken);

    /// <summary>Writes all of <paramref name="data"/>, waiting for room as needed.</summary>
    ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken);

    /// <summary>Ends the stream now: pending and later reads return 0, writes fail.</summary>
    void Abort();

    /// <summary>Short description for log lines ("socket", "ring dom5").</summary>
    string Describe { get; }
}
