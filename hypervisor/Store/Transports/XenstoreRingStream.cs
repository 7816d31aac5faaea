using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using XenIo.Hypervisor.Abi;

namespace XenIo.Hypervisor.Store.Transports;

/// <summary>A peer broke the ring protocol (indices out of range); the connection is dropped.</summary>
public sealed class XenstoreRingException(string message) : IOException(message);

/// <summary>
/// Xen's <c>xenstore_domain_interface</c> byte rings (io/xs_wire.h): 1 KiB request and response rings
/// with free-running u32 indices masked by the ring size. The daemon consumes requests and produces
/// responses; a guest (or an in-process frontend) does the reverse. Each side keeps its own copy of the
/// index it owns and trusts nothing it reads back except after the check <c>prod - cons &lt;= size</c>;
/// a failed check disconnects (XENSTORE_ERROR_RINGIDX).
/// </summary>
public sealed class XenstoreRingStream : IXenstoreStream
{
    private const uint Size = XenstoreLimits.RingSize;
    private const uint Mask = Size - 1;

    private readonly Memory<byte> _page;
    private readonly IEventChannelDoorbell _doorbell;
    private readonly bool _isDaemon;
    private readonly AsyncSignal _readable = new();
    private readonly AsyncSignal _writable = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _pump;
    private readonly string _describe;
    private uint _inCons;   // our consumer index on the ring we read
    private uint _outProd;  // our producer index on the ring we write
    private int _aborted;
    private int _busy; // threads inside TryRead/TryWrite: Abort waits for them, so the page can be unmapped after

    /// <param name="isDaemon">true: read requests, write responses; false: the guest side.</param>
    public XenstoreRingStream(Memory<byte> page, IEventChannelDoorbell doorbell, bool isDaemon, string describe = "ring")
    {
        if (page.Length < XenstoreDomainInterface.ErrorOffset + sizeof(uint))
            throw new ArgumentException("page too small for xenstore_domain_interface", nameof(page));
        _page = page;
        _doorbell = doorbell;
        _isDaemon = isDaemon;
        _describe = describe;
        var span = page.Span;
        _inCons = Load(span, InConsOffset);
        _outProd = Load(span, OutProdOffset);
        if (isDaemon)
        {
            Store(span, XenstoreDomainInterface.ServerFeaturesOffset, XenstoreLimits.ServerFeatureError);
            Store(span, XenstoreDomainInterface.ErrorOffset, XenstoreLimits.ErrorNone);
        }
        _pump = PumpAsync();
    }

    public string Describe => _describe;

    private int InRingOffset => _isDaemon ? XenstoreDomainInterface.ReqOffset : XenstoreDomainInterface.RspOffset;
    private int InConsOffset => _isDaemon ? XenstoreDomainInterface.ReqConsOffset : XenstoreDomainInterface.RspConsOffset;
    private int InProdOffset => _isDaemon ? XenstoreDomainInterface.ReqProdOffset : XenstoreDomainInterface.RspProdOffset;
    private int OutRingOffset => _isDaemon ? XenstoreDomainInterface.RspOffset : XenstoreDomainInterface.ReqOffset;
    private int OutConsOffset => _isDaemon ? XenstoreDomainInterface.RspConsOffset : XenstoreDomainInterface.ReqConsOffset;
    private int OutProdOffset => _isDaemon ? XenstoreDomainInterface.RspProdOffset : XenstoreDomainInterface.ReqProdOffset;

    private static uint Load(Span<byte> page, int offset) =>
        Volatile.Read(ref Unsafe.As<byte, uint>(ref page[offset]));

    private static void Store(Span<byte> page, int offset, uint value) =>
        Volatile.Write(ref Unsafe.As<byte, uint>(ref page[offset]), value);

    // One task turns the doorbell's kicks into wake-ups for both directions.
    private async Task PumpAsync()
    {
        try
        {
            while (await _doorbell.WaitAsync(_stop.Token).ConfigureAwait(false))
            {
                _readable.Set();
                _writable.Set();
            }
        }
        catch (OperationCanceledException) { }
        catch (ObjectDisposedException) { }
        _readable.Close();
        _writable.Close();
    }

    /// <summary>Copies what the peer has produced; 0 once aborted or the doorbell is closed.</summary>
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        while (true)
        {
            if (Volatile.Read(ref _aborted) != 0) return 0;
            var n = TryRead(buffer.Span);
            if (n > 0) return n;
            if (!await _readable.WaitAsync().ConfigureAwait(false))
                return TryRead(buffer.Span);
        }
    }

    private int TryRead(Span<byte> dest)
    {
        if (!Enter()) return 0;
        try
        {
            return TryReadCore(dest);
        }
        finally
        {
            Exit();
        }
    }

    private int TryReadCore(Span<byte> dest)
    {
        var page = _page.Span;
        var prod = Load(page, InProdOffset);
        var avail = prod - _inCons;
        if (avail > Size) Fail(page, $"ring producer index out of range ({avail} > {Size})");
        if (avail == 0 || dest.Length == 0) return 0;
        Interlocked.MemoryBarrier(); // read the bytes only after the index that publishes them
        var n = (int)Math.Min(avail, (uint)dest.Length);
        var start = (int)(_inCons & Mask);
        var first = Math.Min(n, (int)Size - start);
        page.Slice(InRingOffset + start, first).CopyTo(dest);
        if (n > first) page.Slice(InRingOffset, n - first).CopyTo(dest[first..]);
        Interlocked.MemoryBarrier(); // done copying before the peer may reuse the space
        _inCons += (uint)n;
        Store(page, InConsOffset, _inCons);
        _doorbell.Notify();
        return n;
    }

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        while (data.Length > 0)
        {
            if (Volatile.Read(ref _aborted) != 0) throw new IOException("ring closed");
            var n = TryWrite(data.Span);
            if (n > 0) { data = data[n..]; continue; }
            if (!await _writable.WaitAsync().ConfigureAwait(false)) throw new IOException("ring closed");
        }
    }

    private int TryWrite(ReadOnlySpan<byte> src)
    {
        if (!Enter()) throw new IOException("ring closed");
        try
        {
            return TryWriteCore(src);
        }
        finally
        {
            Exit();
        }
    }

    private bool Enter()
    {
        Interlocked.Increment(ref _busy);
        if (Volatile.Read(ref _aborted) == 0) return true;
        Interlocked.Decrement(ref _busy);
        return false;
    }

    private void Exit() => Interlocked.Decrement(ref _busy);

    private int TryWriteCore(ReadOnlySpan<byte> src)
    {
        var page = _page.Span;
        var cons = Load(page, OutConsOffset);
        var used = _outProd - cons;
        if (used > Size) Fail(page, $"ring consumer index out of range ({used} > {Size})");
        var room = Size - used;
        if (room == 0) return 0;
        var n = (int)Math.Min(room, (uint)src.Length);
        var start = (int)(_outProd & Mask);
        var first = Math.Min(n, (int)Size - start);
        src[..first].CopyTo(page.Slice(OutRingOffset + start, first));
        if (n > first) src[first..n].CopyTo(page.Slice(OutRingOffset, n - first));
        Interlocked.MemoryBarrier(); // bytes visible before the index that publishes them
        _outProd += (uint)n;
        Store(page, OutProdOffset, _outProd);
        _doorbell.Notify();
        return n;
    }

    private void Fail(Span<byte> page, string why)
    {
        if (_isDaemon) Store(page, XenstoreDomainInterface.ErrorOffset, XenstoreLimits.ErrorRingIdx);
        MarkAborted(); // not Abort(): this thread is inside the page and Abort waits for that
        throw new XenstoreRingException(why);
    }

    /// <summary>
    /// Stops the stream and returns only once no thread touches the page any more, so the caller may
    /// unmap it right after (a guest's page must never be read after release).
    /// </summary>
    public void Abort()
    {
        MarkAborted();
        var spin = new SpinWait();
        while (Volatile.Read(ref _busy) != 0) spin.SpinOnce();
    }

    private void MarkAborted()
    {
        if (Interlocked.Exchange(ref _aborted, 1) != 0) return;
        _readable.Close();
        _writable.Close();
        _stop.Cancel();
    }

    /// <summary>Aborts; the doorbell pump ends when the doorbell is closed by its owner.</summary>
    public ValueTask DisposeAsync()
    {
        Abort();
        return ValueTask.CompletedTask;
    }

    /// <summary>Completes once the doorbell pump has stopped (after the doorbell is closed).</summary>
    public Task Completion => _pump;
}
