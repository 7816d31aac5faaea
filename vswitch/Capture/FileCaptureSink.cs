namespace XenIo.VSwitch.Capture;

/// <summary>
/// A persistent mirror's capture file, written off the forwarding path. Records go into a memory queue
/// under the bridge's lock (bounded: a disk that cannot keep up costs dropped records, counted, never
/// forwarding time), and a pump writes the queue to the file whenever 32 records wait, on
/// <see cref="Flush"/>, and at least once a second. A write that fails (disk full, the filesystem gone)
/// ends the capture with one log line: later records are dropped, and what reached the file stays
/// readable (a record the failure tore is trimmed when the file is continued, <see cref="CaptureFile"/>).
/// </summary>
public sealed class FileCaptureSink : ICaptureSink
{
    private static readonly TimeSpan PumpInterval = TimeSpan.FromSeconds(1);
    /// <summary>How long <see cref="Flush"/> and <see cref="Dispose"/> wait for the disk before giving up on it.</summary>
    private static readonly TimeSpan DiskWait = TimeSpan.FromSeconds(5);

    private readonly string _path;
    private readonly Stream _file;
    private readonly CaptureQueue _queue = new();
    private readonly BoundedCaptureSink _bounded;
    private readonly Action<string>? _log;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _pump;
    // Flush requests and the latest one whose records are on the file: Flush waits for its own.
    private long _flushWanted;
    private long _flushDone;
    private readonly object _flushed = new();
    private volatile string? _error;

    /// <summary>Opens (or continues, <see cref="CaptureFile.OpenResuming"/>) <paramref name="path"/> as pcap with nanoseconds or as pcapng.</summary>
    public static FileCaptureSink Open(string path, bool pcapNg, int snaplen, Action<string>? log = null)
    {
        var file = CaptureFile.OpenResuming(path, pcapNg, snaplen, out var continues);
        return new FileCaptureSink(file, path, pcapNg, snaplen, continues, log);
    }

    /// <param name="file">Where the records go, positioned where they start.</param>
    /// <param name="path">The file's name, for the log.</param>
    /// <param name="continues">The file already holds a pcap header (see <see cref="CaptureFile.OpenResuming"/>).</param>
    internal FileCaptureSink(Stream file, string path, bool pcapNg, int snaplen, bool continues, Action<string>? log = null, int maxQueuedBytes = BoundedCaptureSink.DefaultMaxQueuedBytes)
    {
        _path = path;
        _log = log;
        _file = file;
        _bounded = BoundedCaptureSink.Over(_queue, pcapNg, snaplen, continues, maxQueuedBytes);
        _pump = Task.Run(PumpAsync);
    }

    /// <summary>Records dropped because the disk fell behind, or after the file failed.</summary>
    public long Dropped => _bounded.Dropped;

    /// <summary>Why the capture stopped, or null while it runs.</summary>
    public string? Error => _error;

    public void Write(Core.SwitchPort port, Core.CaptureDirection direction, long unixNanoseconds, ReadOnlySpan<byte> frame, int originalLength) =>
        _bounded.Write(port, direction, unixNanoseconds, frame, originalLength);

    /// <summary>Has the pump write what is queued and waits (up to a few seconds) until it is on the file, so the live file reads whole.</summary>
    public void Flush()
    {
        var wanted = Interlocked.Increment(ref _flushWanted);
        _queue.Flush();
        var deadline = Environment.TickCount64 + (long)DiskWait.TotalMilliseconds;
        lock (_flushed)
        {
            while (Volatile.Read(ref _flushDone) < wanted && _error is null && !_pump.IsCompleted)
            {
                var left = deadline - Environment.TickCount64;
                if (left <= 0 || !Monitor.Wait(_flushed, TimeSpan.FromMilliseconds(left))) return;
            }
        }
    }

    private async Task PumpAsync()
    {
        while (true)
        {
            try
            {
                await _queue.WaitAsync(PumpInterval, _stop.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            // Every flush asked before the take has its records in what the take gets.
            var covered = Volatile.Read(ref _flushWanted);
            if (!await TryWriteAsync(_queue.Take()).ConfigureAwait(false)) return;
            lock (_flushed)
            {
                Volatile.Write(ref _flushDone, covered);
                Monitor.PulseAll(_flushed);
            }
        }
    }

    private async Task<bool> TryWriteAsync(ReadOnlyMemory<byte> chunk)
    {
        if (chunk.IsEmpty) return true;
        try
        {
            await _file.WriteAsync(chunk).ConfigureAwait(false);
            await _file.FlushAsync().ConfigureAwait(false);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Fail(e.Message);
            return false;
        }
    }

    private void Fail(string why)
    {
        _error = why;
        _bounded.Close();
        _log?.Invoke($"capture file {_path}: {why}; capture stopped, later frames are dropped");
        lock (_flushed) Monitor.PulseAll(_flushed);
    }

    /// <summary>Stops the pump, writes what is still queued and closes the file.</summary>
    public void Dispose()
    {
        if (_stop.IsCancellationRequested) return;
        _stop.Cancel();
        _bounded.Close();
        if (!_pump.Wait(DiskWait))
        {
            // A write stuck on a dead disk cannot be interrupted: the file is closed when it returns.
            _log?.Invoke($"capture file {_path}: the disk has not answered for {DiskWait.TotalSeconds:0} s; closing it when it does");
            _pump.ContinueWith(_ => CloseFile(), TaskScheduler.Default);
            return;
        }
        if (_error is null) TryWriteAsync(_queue.Take()).GetAwaiter().GetResult();
        CloseFile();
    }

    private void CloseFile()
    {
        _bounded.Dispose();
        try
        {
            _file.Dispose();
        }
        catch (IOException e)
        {
            if (_error is null) _log?.Invoke($"capture file {_path}: {e.Message}");
        }
        _stop.Dispose();
    }
}
