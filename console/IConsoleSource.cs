namespace XenIo.Consoled;

/// <summary>Where a console source delivers what the guest printed.</summary>
public interface IConsoleOutput
{
    /// <summary>Guest output; the span is only valid during the call.</summary>
    void Write(ReadOnlySpan<byte> data);

    /// <summary>A line about the console itself (ring broken, peer reconnecting), shown to viewers.</summary>
    void Notice(string message);
}

/// <summary>
/// The guest end of a console: a Xen console ring (<see cref="Rings.RingConsoleSource"/>) or an
/// external VM's serial socket (<see cref="External.SocketConsoleSource"/>).
/// </summary>
public interface IConsoleSource
{
    /// <summary>Pumps guest output into <paramref name="output"/> until cancelled. Never throws for guest misbehaviour.</summary>
    Task RunAsync(IConsoleOutput output, CancellationToken cancellationToken);

    /// <summary>
    /// Delivers viewer input to the guest, waiting while the guest's input ring is full. Returns false
    /// when the source cannot take input at all (ring broken, peer gone): the bytes are dropped.
    /// </summary>
    ValueTask<bool> WriteInputAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken);
}
