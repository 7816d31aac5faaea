using Microsoft.Extensions.Logging;
using XenIo.Consoled.Buffers;
using XenIo.Consoled.Logs;

namespace XenIo.Consoled.Viewers;

/// <summary>
/// One console's meeting point: guest output flows from the source into the bounded output buffer, and
/// from there (on the hub's own task, so a slow disk never holds up the ring) into the log, the
/// scrollback and every viewer's queue. Exactly one attached viewer is the writer; the others are
/// spectators whose input is dropped. All viewer bookkeeping happens under one lock, which also makes
/// "replay the scrollback, then go live" atomic for a viewer that attaches mid-stream.
/// </summary>
public sealed class ConsoleHub : IConsoleOutput, IDisposable
{
    private const int ChunkSize = 16 * 1024;
    private readonly object _gate = new();
    private readonly List<Viewer> _viewers = [];
    private readonly Scrollback _scrollback;
    private readonly ConsoleOutputBuffer _buffer;
    private readonly ConsoleLogFile? _log;
    private readonly ILogger _logger;
    private Viewer? _writer;

    public ConsoleHub(string name, IConsoleSource source, int outputLimit, int scrollback, ConsoleLogFile? log, ILogger logger)
    {
        Name = name;
        Source = source;
        _buffer = new ConsoleOutputBuffer(outputLimit);
        _scrollback = new Scrollback(scrollback);
        _log = log;
        _logger = logger;
    }

    public string Name { get; }

    public IConsoleSource Source { get; }

    /// <summary>Called with a SysRq key when a writer sends a break followed by a key.</summary>
    public Action<char>? SysrqRequested { get; set; }

    public long BytesFromGuest { get; private set; }

    public long DiscardedBytes => _buffer.Discarded;

    public int ViewerCount
    {
        get { lock (_gate) return _viewers.Count; }
    }

    public Viewer? Writer
    {
        get { lock (_gate) return _writer; }
    }

    void IConsoleOutput.Write(ReadOnlySpan<byte> data) => _buffer.Append(data);

    void IConsoleOutput.Notice(string message)
    {
        _logger.LogInformation("console {Name}: {Message}", Name, message);
        lock (_gate)
        {
            foreach (var v in _viewers) v.QueueNotice(message);
        }
    }

    /// <summary>Runs the source and the output pump until cancelled.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var source = Task.Run(() => Source.RunAsync(this, cancellationToken), cancellationToken);
        try
        {
            await PumpAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        try
        {
            await source.ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            _logger.LogError(e, "console {Name}: source failed", Name);
        }
    }

    private async Task PumpAsync(CancellationToken cancellationToken)
    {
        var chunk = new byte[ChunkSize];
        while (await _buffer.WaitAsync(cancellationToken).ConfigureAwait(false))
        {
            int n;
            while ((n = _buffer.Take(chunk)) > 0)
            {
                Publish(chunk.AsSpan(0, n));
            }
        }
    }

    /// <summary>Hands guest output to the log, the scrollback and every viewer; never blocks on a viewer.</summary>
    internal void Publish(ReadOnlySpan<byte> data)
    {
        _log?.Write(data);
        lock (_gate)
        {
            BytesFromGuest += data.Length;
            _scrollback.Append(data);
            foreach (var v in _viewers) v.DeliverGuestOutput(data);
        }
    }

    /// <summary>Adds an authenticated viewer: replays the scrollback and makes it the writer if nobody is.</summary>
    internal void Attach(Viewer viewer)
    {
        lock (_gate)
        {
            bool writer = _writer is null;
            if (writer) _writer = viewer;
            viewer.QueueNotice(writer
                ? $"attached to {Name} read-write; ^Ec? for help"
                : $"attached to {Name} read-only ({_writer!.Description} is writing); ^Ecf to force");
            if (_scrollback.Count > 0)
            {
                var replay = new byte[_scrollback.Count];
                _scrollback.CopyTo(replay);
                viewer.DeliverGuestOutput(replay);
            }
            _viewers.Add(viewer);
        }
    }

    internal void Detach(Viewer viewer)
    {
        lock (_gate)
        {
            if (!_viewers.Remove(viewer)) return;
            if (_writer == viewer) _writer = null;
        }
    }

    /// <summary>Makes <paramref name="viewer"/> the writer; the old one becomes a spectator and is told so.</summary>
    internal void ForceWriter(Viewer viewer)
    {
        lock (_gate)
        {
            if (!_viewers.Contains(viewer)) return;
            if (_writer == viewer)
            {
                viewer.QueueNotice("you are already read-write");
                return;
            }
            _writer?.QueueNotice($"{viewer.Description} forced attach; you are read-only");
            _writer = viewer;
            viewer.QueueNotice("read-write (forced)");
        }
    }

    internal void ClaimWriter(Viewer viewer)
    {
        lock (_gate)
        {
            if (!_viewers.Contains(viewer)) return;
            if (_writer is null || _writer == viewer)
            {
                _writer = viewer;
                viewer.QueueNotice("read-write");
            }
            else
            {
                viewer.QueueNotice($"{_writer.Description} is writing; ^Ecf to force");
            }
        }
    }

    internal void Spectate(Viewer viewer)
    {
        lock (_gate)
        {
            if (_writer == viewer) _writer = null;
            viewer.QueueNotice("read-only");
        }
    }

    internal bool IsWriter(Viewer viewer)
    {
        lock (_gate) return _writer == viewer;
    }

    /// <summary>Passes a writer's input to the guest; a spectator's is dropped.</summary>
    internal ValueTask<bool> WriteInputAsync(Viewer viewer, ReadOnlyMemory<byte> data, CancellationToken cancellationToken) =>
        IsWriter(viewer) ? Source.WriteInputAsync(data, cancellationToken) : ValueTask.FromResult(false);

    internal void RequestSysrq(Viewer viewer, char key)
    {
        if (!IsWriter(viewer)) return;
        _logger.LogInformation("console {Name}: SysRq '{Key}' from {Viewer}", Name, key, viewer.Description);
        SysrqRequested?.Invoke(key);
    }

    /// <summary>Drops every viewer (the console is going away).</summary>
    internal Viewer[] TakeViewers()
    {
        lock (_gate)
        {
            var all = _viewers.ToArray();
            _viewers.Clear();
            _writer = null;
            return all;
        }
    }

    public void Dispose()
    {
        _buffer.Close();
        _log?.Dispose();
    }
}
