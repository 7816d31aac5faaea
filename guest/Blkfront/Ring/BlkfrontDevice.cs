using System.Globalization;
using System.Runtime.InteropServices;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Memory;
using XenIo.Hypervisor.Store.Client;

namespace XenIo.Guest.Blkfront.Ring;

/// <summary>What blkfront asks the backend for; each is capped by what the backend offers.</summary>
public sealed record BlkfrontOptions
{
    public int Queues { get; init; } = 1;

    /// <summary>ring-page-order: 0 is 32 slots, 2 is 128.</summary>
    public int RingPageOrder { get; init; } = 1;

    /// <summary>Segments per indirect request (pages per request): 256 is 1 MiB.</summary>
    public int MaxIndirectSegments { get; init; } = 256;

    /// <summary>How long a (re)connection may wait for the backend before it is retried.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(30);
}

/// <summary>
/// The blkif frontend of one vbd (Linux's xen-blkfront): the xenbus handshake, one ring per queue, and
/// requests from <see cref="IBlockDevice"/> calls split into ring requests of at most
/// <see cref="MaxRequestBytes"/> (INDIRECT when the backend offers it). Data pages are granted once per
/// slot and reused (feature-persistent); data is copied between them and the caller's buffers.
/// When the backend goes away (its event channel closes, or its state leaves Connected) the device
/// reconnects: new rings, the handshake again, and every request that was in flight is sent again,
/// so callers only see a delay. Thread-safe.
/// </summary>
public sealed class BlkfrontDevice : IBlockDevice, IAsyncDisposable
{
    private const int Info_ReadOnly = 4;
    private const int ConnectAttempts = 3;

    private readonly GuestDomain _domain;
    private readonly XenstoreClient _store;
    private readonly BlkfrontOptions _options;
    private readonly Action<string> _log;
    private readonly object _sendGate = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly SemaphoreSlim _lostSignal = new(0);
    private BlkfrontQueue[]? _queues;
    private BlkRequestSlot[] _slots = [];
    private Stack<BlkRequestSlot>[] _free = [];
    private SemaphoreSlim[] _freeCount = [];
    private int _nextQueue;
    private int _order, _queueCount, _maxSegments;
    private Task? _maintain;
    private static int s_watchToken;

    private BlkfrontDevice(GuestDomain domain, XenstoreClient store, string frontendPath, string backendPath, ushort backendId, BlkfrontOptions options, Action<string> log)
    {
        _domain = domain;
        _store = store;
        FrontendPath = frontendPath;
        BackendPath = backendPath;
        BackendId = backendId;
        _options = options;
        _log = log;
    }

    public string FrontendPath { get; }
    public string BackendPath { get; }
    public ushort BackendId { get; }
    public long SizeBytes { get; private set; }
    public int SectorSize { get; private set; } = 512;
    public bool ReadOnly { get; private set; }
    public bool SupportsDiscard { get; private set; }
    public bool SupportsFlush { get; private set; }
    public bool SupportsBarrier { get; private set; }
    public int QueueCount => _queueCount;
    public int RingSize => _queues is { Length: > 0 } q ? q[0].Size : 0;

    /// <summary>Requests that can be outstanding at once (all queues), within the grant budget.</summary>
    public int MaxInFlight => _slots.Length;

    /// <summary>Bytes one ring request carries: 11 pages, or the indirect segments the backend offers.</summary>
    public int MaxRequestBytes => _maxSegments * DomainMemory.PageSize;

    /// <summary>How many times the device has reconnected to a backend (after the first connection).</summary>
    public int Reconnects { get; private set; }

    /// <summary>Requests sent again after a reconnect.</summary>
    public long Resubmitted { get; private set; }

    /// <summary>Connects to the backend and returns once the disk is usable.</summary>
    public static async Task<BlkfrontDevice> ConnectAsync(GuestDomain domain, XenstoreClient store, string frontendPath, string backendPath, ushort backendId,
        BlkfrontOptions? options = null, Action<string>? log = null, CancellationToken cancellationToken = default)
    {
        var front = new BlkfrontDevice(domain, store, frontendPath, backendPath, backendId, options ?? new BlkfrontOptions(), log ?? (_ => { }));
        try
        {
            // A backend that restarts in the middle of the handshake waits for us to start over: do, a few times.
            for (int attempt = 1; ; attempt++)
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                timeout.CancelAfter(front._options.HandshakeTimeout);
                try
                {
                    await front.HandshakeAsync(first: true, timeout.Token).ConfigureAwait(false);
                    break;
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested && attempt < ConnectAttempts)
                {
                    front._log($"{frontendPath}: no answer from the backend within {front._options.HandshakeTimeout.TotalSeconds:0} s; starting over");
                }
            }
        }
        catch
        {
            await front.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        front._maintain = Task.Run(front.MaintainAsync);
        return front;
    }

    // ---- the xenbus handshake ----

    private async Task HandshakeAsync(bool first, CancellationToken ct)
    {
        await WriteStateAsync(XenbusState.Initialising, ct).ConfigureAwait(false);
        // A backend that died left its old state behind; a live or restarted one shows InitWait when ready for us.
        var offered = await WaitForBackendAsync(s => s is XenbusState.InitWait or XenbusState.Closing or XenbusState.Closed, ct).ConfigureAwait(false);
        if (offered != XenbusState.InitWait)
        {
            // A live backend answers our Initialising with InitWait even from Closing; one that stays closed refused the
            // vbd (a missing image, a locked one, a format it does not serve): say why instead of waiting.
            using var grace = CancellationTokenSource.CreateLinkedTokenSource(ct);
            grace.CancelAfter(TimeSpan.FromSeconds(3));
            try { await WaitForBackendAsync(s => s == XenbusState.InitWait, grace.Token).ConfigureAwait(false); }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                var error = await _store.TryReadAsync($"{BackendPath}/error", cancellationToken: ct).ConfigureAwait(false);
                throw new IOException($"the backend refused the vbd: {error ?? "no reason given"}");
            }
        }

        int maxOrder = (int)Math.Min(await ReadNumberAsync("max-ring-page-order", 0, ct).ConfigureAwait(false), RingGeometry.MaxRingPageOrder);
        int maxQueues = (int)Math.Clamp(await ReadNumberAsync("multi-queue-max-queues", 1, ct).ConfigureAwait(false), 1, 16);
        int maxIndirect = (int)Math.Min(await ReadNumberAsync("feature-max-indirect-segments", 0, ct).ConfigureAwait(false), 4096);
        if (first)
        {
            _order = Math.Clamp(_options.RingPageOrder, 0, maxOrder);
            _queueCount = Math.Clamp(_options.Queues, 1, maxQueues);
            _maxSegments = maxIndirect > BlkifLimits.MaxSegmentsPerRequest
                ? Math.Min(Math.Min(maxIndirect, _options.MaxIndirectSegments), BlkifLimits.SegmentsPerIndirectFrame)
                : BlkifLimits.MaxSegmentsPerRequest;
            CreateSlots();
        }
        else if (maxOrder < _order || maxQueues < _queueCount || (_maxSegments > BlkifLimits.MaxSegmentsPerRequest && maxIndirect < _maxSegments))
        {
            throw new IOException("the restarted backend offers smaller rings or requests than the requests in flight need");
        }

        var queues = new BlkfrontQueue[_queueCount];
        try
        {
            for (int q = 0; q < queues.Length; q++)
                queues[q] = new BlkfrontQueue(_domain, BackendId, q, _order, _slots, OnLost);
            await _store.TransactAsync(async t =>
            {
                for (int q = 0; q < queues.Length; q++)
                {
                    string prefix = queues.Length == 1 ? "" : $"queue-{q}/";
                    if (_order == 0)
                    {
                        await _store.WriteAsync($"{FrontendPath}/{prefix}ring-ref", Num(queues[q].RingRefs[0]), t, ct).ConfigureAwait(false);
                    }
                    else
                    {
                        for (int r = 0; r < queues[q].RingRefs.Count; r++)
                            await _store.WriteAsync($"{FrontendPath}/{prefix}ring-ref{r}", Num(queues[q].RingRefs[r]), t, ct).ConfigureAwait(false);
                    }
                    await _store.WriteAsync($"{FrontendPath}/{prefix}event-channel", Num(queues[q].Channel.Port), t, ct).ConfigureAwait(false);
                }
                if (_order > 0) await _store.WriteAsync($"{FrontendPath}/ring-page-order", Num((uint)_order), t, ct).ConfigureAwait(false);
                if (queues.Length > 1) await _store.WriteAsync($"{FrontendPath}/multi-queue-num-queues", Num((uint)queues.Length), t, ct).ConfigureAwait(false);
                await _store.WriteAsync($"{FrontendPath}/protocol", "x86_64-abi", t, ct).ConfigureAwait(false);
                await _store.WriteAsync($"{FrontendPath}/feature-persistent", "1", t, ct).ConfigureAwait(false);
            }, cancellationToken: ct).ConfigureAwait(false);
            await WriteStateAsync(XenbusState.Initialised, ct).ConfigureAwait(false);

            var state = await WaitForBackendAsync(s => s is XenbusState.Connected or XenbusState.Closing or XenbusState.Closed, ct).ConfigureAwait(false);
            if (state != XenbusState.Connected)
            {
                var error = await _store.TryReadAsync($"{BackendPath}/error", cancellationToken: ct).ConfigureAwait(false);
                throw new IOException($"the backend refused the connection ({state}): {error ?? "no reason given"}");
            }
            ulong sectors = await ReadNumberAsync("sectors", 0, ct).ConfigureAwait(false);
            int sectorSize = (int)await ReadNumberAsync("sector-size", 512, ct).ConfigureAwait(false);
            if (sectorSize is not (512 or 4096)) throw new IOException($"the backend's sector-size {sectorSize} is not 512 or 4096");
            ulong info = await ReadNumberAsync("info", 0, ct).ConfigureAwait(false);
            SectorSize = sectorSize;
            SizeBytes = (long)Math.Min(sectors, long.MaxValue / 512) * 512 / sectorSize * sectorSize;
            ReadOnly = (info & Info_ReadOnly) != 0;
            SupportsFlush = await FeatureAsync("feature-flush-cache", ct).ConfigureAwait(false);
            SupportsBarrier = await FeatureAsync("feature-barrier", ct).ConfigureAwait(false);
            SupportsDiscard = await FeatureAsync("feature-discard", ct).ConfigureAwait(false);
            await WriteStateAsync(XenbusState.Connected, ct).ConfigureAwait(false);
        }
        catch
        {
            foreach (var q in queues) q?.Dispose();
            throw;
        }

        foreach (var q in queues) q.Start();
        int resent = 0;
        lock (_sendGate)
        {
            _queues = queues;
            // Whatever was sent to the backend that went away, or queued while we were away, goes out again, in slot order.
            foreach (var slot in _slots)
            {
                if (!slot.InFlight) continue;
                queues[slot.Queue].Submit(slot);
                resent++;
            }
        }
        if (!first)
        {
            Reconnects++;
            Resubmitted += resent;
            _log($"{FrontendPath}: reconnected, {resent} request(s) sent again");
        }
    }

    private void CreateSlots()
    {
        int ringSize = RingGeometry.SlotsForBytes(BlkifLimits.RequestSlotSize, DomainMemory.PageSize << _order);
        // Every slot keeps its pages granted (persistent), and the grant table is small (hyperd gives 4 frames,
        // 2048 refs) and shared with the other frontends: use at most half of what is free. Requests shrink
        // first (fewer indirect segments), then the queue depth, as Linux blkfront's grant budget does.
        int budget = Math.Max(64, _domain.GrantTable.FreeRefs / 2);
        int perQueue = ringSize;
        while (_maxSegments > BlkifLimits.MaxSegmentsPerRequest && perQueue * _queueCount * (_maxSegments + 1) > budget)
            _maxSegments = Math.Max(BlkifLimits.MaxSegmentsPerRequest, _maxSegments / 2);
        if (_maxSegments <= BlkifLimits.MaxSegmentsPerRequest) _maxSegments = BlkifLimits.MaxSegmentsPerRequest;
        while (perQueue > 1 && perQueue * _queueCount * (_maxSegments + 1) > budget) perQueue--;
        _slots = new BlkRequestSlot[perQueue * _queueCount];
        _free = new Stack<BlkRequestSlot>[_queueCount];
        _freeCount = new SemaphoreSlim[_queueCount];
        for (int q = 0; q < _queueCount; q++)
        {
            _free[q] = new Stack<BlkRequestSlot>(perQueue);
            _freeCount[q] = new SemaphoreSlim(perQueue, perQueue);
        }
        for (int i = 0; i < _slots.Length; i++)
        {
            // Each queue owns exactly a ring's worth of slots, so a slot always finds room on its ring.
            _slots[i] = new BlkRequestSlot(i, i % _queueCount, _maxSegments);
            _free[i % _queueCount].Push(_slots[i]);
        }
    }

    /// <summary>Reconnects whenever a ring reports its backend gone or the backend's state leaves Connected.</summary>
    private async Task MaintainAsync()
    {
        var ct = _stop.Token;
        Task? signal = null;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                // One waiter on the signal at a time, kept across rounds, so no report is taken by a stale waiter.
                signal ??= _lostSignal.WaitAsync(ct);
                using var watching = CancellationTokenSource.CreateLinkedTokenSource(ct);
                var state = WaitForBackendAsync(s => s != XenbusState.Connected, watching.Token);
                var which = await Task.WhenAny(signal, state).ConfigureAwait(false);
                watching.Cancel();
                string why = which == signal ? "its ring" : $"its state {(state.IsCompletedSuccessfully ? state.Result : XenbusState.Unknown)}";
                try { await state.ConfigureAwait(false); } catch (Exception e) when (e is OperationCanceledException or IOException or XenstoreException) { }
                if (ct.IsCancellationRequested) return;
                if (which == signal) signal = null;
                _log($"{FrontendPath}: backend lost ({why}); reconnecting");
                TearDown();
                while (!ct.IsCancellationRequested)
                {
                    try
                    {
                        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
                        timeout.CancelAfter(_options.HandshakeTimeout);
                        await HandshakeAsync(first: false, timeout.Token).ConfigureAwait(false);
                        break;
                    }
                    catch (Exception e) when (e is IOException or XenstoreException or OperationCanceledException && !ct.IsCancellationRequested)
                    {
                        _log($"{FrontendPath}: reconnect failed ({e.Message}); retrying");
                        await Task.Delay(500, ct).ConfigureAwait(false);
                    }
                }
                // Reports from the rings torn down above are about the loss just handled.
                if (signal is { IsCompleted: true }) signal = null;
                while (_lostSignal.Wait(0)) { }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested) { return; }
            catch (Exception e) when (e is IOException or XenstoreException)
            {
                _log($"{FrontendPath}: {e.Message}");
                try { await Task.Delay(500, ct).ConfigureAwait(false); } catch (OperationCanceledException) { return; }
            }
        }
    }

    private void OnLost(string why)
    {
        _log($"{FrontendPath}: {why}");
        _lostSignal.Release();
    }

    private void TearDown()
    {
        BlkfrontQueue[]? queues;
        lock (_sendGate)
        {
            queues = _queues;
            _queues = null;
        }
        if (queues is null) return;
        foreach (var q in queues) q.Dispose();
    }

    // ---- requests ----

    /// <summary>Sends one ring request that the slot describes and waits for its status.</summary>
    private ValueTask<short> SendAsync(BlkRequestSlot slot)
    {
        slot.Reset();
        var wait = slot.Wait();
        lock (_sendGate)
        {
            slot.InFlight = true;
            // Disconnected: the slot waits in flight and goes out with the reconnect's resubmission.
            _queues?[slot.Queue].Submit(slot);
        }
        return wait;
    }

    private async ValueTask<BlkRequestSlot> RentAsync(CancellationToken ct)
    {
        int q = (int)((uint)Interlocked.Increment(ref _nextQueue) % (uint)_queueCount);
        await _freeCount[q].WaitAsync(ct).ConfigureAwait(false);
        lock (_free[q]) return _free[q].Pop();
    }

    private void Return(BlkRequestSlot slot)
    {
        lock (_free[slot.Queue]) _free[slot.Queue].Push(slot);
        _freeCount[slot.Queue].Release();
    }

    /// <summary>Grants the slot enough data pages for <paramref name="pages"/> (once; kept for the device's life).</summary>
    private void EnsurePages(BlkRequestSlot slot, int pages, bool indirect)
    {
        while (slot.PageCount < pages)
        {
            uint frame = _domain.Pages.Allocate();
            slot.Frames[slot.PageCount] = frame;
            slot.Grefs[slot.PageCount] = _domain.GrantTable.GrantAccess(BackendId, frame, readOnly: false);
            slot.PageCount++;
        }
        if (indirect && !slot.HasIndirect)
        {
            slot.IndirectFrame = _domain.Pages.Allocate();
            slot.IndirectGref = _domain.GrantTable.GrantAccess(BackendId, slot.IndirectFrame, readOnly: true);
            slot.HasIndirect = true;
        }
    }

    private Span<byte> Page(uint frame) => _domain.Memory.Page(frame);

    /// <summary>Builds a READ or WRITE of <paramref name="bytes"/> at <paramref name="sector"/> over the slot's first pages.</summary>
    private void BuildReadWrite(BlkRequestSlot slot, BlkifOperation op, ulong sector, int bytes)
    {
        int pages = (bytes + DomainMemory.PageSize - 1) / DomainMemory.PageSize;
        bool indirect = pages > BlkifLimits.MaxSegmentsPerRequest;
        EnsurePages(slot, pages, indirect);
        slot.Request = default;
        if (!indirect)
        {
            ref var r = ref slot.Request;
            r.Operation = op;
            r.NrSegments = (byte)pages;
            r.Id = (ulong)slot.Index;
            r.SectorNumber = sector;
            for (int i = 0; i < pages; i++) r.Seg[i] = Segment(slot.Grefs[i], bytes, i);
            return;
        }
        var segs = MemoryMarshal.Cast<byte, BlkifRequestSegment>(Page(slot.IndirectFrame));
        for (int i = 0; i < pages; i++) segs[i] = Segment(slot.Grefs[i], bytes, i);
        var ind = new BlkifRequestIndirect
        {
            Operation = BlkifOperation.Indirect,
            IndirectOp = op,
            NrSegments = (ushort)pages,
            Id = (ulong)slot.Index,
            SectorNumber = sector,
        };
        ind.IndirectGrefs[0] = slot.IndirectGref;
        MemoryMarshal.Write(MemoryMarshal.AsBytes(new Span<BlkifRequest>(ref slot.Request)), in ind);
    }

    private static BlkifRequestSegment Segment(uint gref, int bytes, int page)
    {
        int len = Math.Min(DomainMemory.PageSize, bytes - page * DomainMemory.PageSize);
        return new BlkifRequestSegment { Gref = gref, FirstSect = 0, LastSect = (byte)(len / BlkifLimits.SectorSize - 1) };
    }

    private void CheckRange(ulong sector, long bytes)
    {
        if (bytes % SectorSize != 0 || (long)(sector * 512) % SectorSize != 0)
            throw new BlockDeviceException(22, $"I/O of {bytes} bytes at sector {sector} is not in whole {SectorSize}-byte sectors");
        if (sector > (ulong)SizeBytes / 512 || (ulong)bytes > (ulong)SizeBytes - sector * 512)
            throw new BlockDeviceException(22, $"I/O of {bytes} bytes at sector {sector} runs past the disk's {SizeBytes} bytes");
    }

    private static void Check(short status, string what)
    {
        if (status == BlkifStatus.Okay) return;
        throw status == BlkifStatus.EOpNotSupp
            ? new BlockDeviceException(95, $"{what}: not supported by the backend")
            : new BlockDeviceException(5, $"{what}: I/O error from the backend");
    }

    public async ValueTask ReadAsync(ulong sector, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        CheckRange(sector, buffer.Length);
        int max = MaxRequestBytes;
        for (int done = 0; done < buffer.Length; done += max)
        {
            int n = Math.Min(max, buffer.Length - done);
            var slot = await RentAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                BuildReadWrite(slot, BlkifOperation.Read, sector + (ulong)(done / 512), n);
                Check(await SendAsync(slot).ConfigureAwait(false), "read");
                CopyOut(slot, buffer.Span.Slice(done, n));
            }
            finally { Return(slot); }
        }
    }

    public async ValueTask WriteAsync(ulong sector, ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (ReadOnly) throw new BlockDeviceException(30, "the disk is read-only");
        CheckRange(sector, buffer.Length);
        int max = MaxRequestBytes;
        for (int done = 0; done < buffer.Length; done += max)
        {
            int n = Math.Min(max, buffer.Length - done);
            var slot = await RentAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                BuildReadWrite(slot, BlkifOperation.Write, sector + (ulong)(done / 512), n);
                CopyIn(slot, buffer.Span.Slice(done, n));
                Check(await SendAsync(slot).ConfigureAwait(false), "write");
            }
            finally { Return(slot); }
        }
    }

    private void CopyIn(BlkRequestSlot slot, ReadOnlySpan<byte> data)
    {
        for (int i = 0, off = 0; off < data.Length; i++, off += DomainMemory.PageSize)
            data.Slice(off, Math.Min(DomainMemory.PageSize, data.Length - off)).CopyTo(Page(slot.Frames[i]));
    }

    private void CopyOut(BlkRequestSlot slot, Span<byte> data)
    {
        for (int i = 0, off = 0; off < data.Length; i++, off += DomainMemory.PageSize)
        {
            int n = Math.Min(DomainMemory.PageSize, data.Length - off);
            Page(slot.Frames[i])[..n].CopyTo(data.Slice(off, n));
        }
    }

    /// <summary>
    /// Zero-copy I/O for the workload driver: <paramref name="fill"/> writes the data straight into the
    /// granted pages before a write; <paramref name="check"/> reads them after a read. Each gets the
    /// page index and the page's bytes for this request.
    /// </summary>
    public async ValueTask<short> DirectAsync(bool write, ulong sector, int bytes, PageAction? fill, PageAction? check, CancellationToken cancellationToken = default)
    {
        CheckRange(sector, bytes);
        if (bytes > MaxRequestBytes || bytes == 0) throw new ArgumentOutOfRangeException(nameof(bytes), bytes, $"1..{MaxRequestBytes} bytes");
        var slot = await RentAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            BuildReadWrite(slot, write ? BlkifOperation.Write : BlkifOperation.Read, sector, bytes);
            int pages = (bytes + DomainMemory.PageSize - 1) / DomainMemory.PageSize;
            if (write && fill is not null)
                for (int i = 0; i < pages; i++) fill(i, Page(slot.Frames[i])[..Math.Min(DomainMemory.PageSize, bytes - i * DomainMemory.PageSize)]);
            short status = await SendAsync(slot).ConfigureAwait(false);
            if (!write && status == BlkifStatus.Okay && check is not null)
                for (int i = 0; i < pages; i++) check(i, Page(slot.Frames[i])[..Math.Min(DomainMemory.PageSize, bytes - i * DomainMemory.PageSize)]);
            return status;
        }
        finally { Return(slot); }
    }

    public async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        BlkifOperation op;
        if (SupportsFlush) op = BlkifOperation.FlushDiskCache;
        else if (SupportsBarrier) op = BlkifOperation.WriteBarrier;
        else return; // a backend without either writes through: acknowledged writes are durable already
        var slot = await RentAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            slot.Request = default;
            slot.Request.Operation = op;
            slot.Request.Id = (ulong)slot.Index;
            Check(await SendAsync(slot).ConfigureAwait(false), "flush");
        }
        finally { Return(slot); }
    }

    public async ValueTask DiscardAsync(ulong sector, ulong sectorCount, CancellationToken cancellationToken = default)
    {
        if (!SupportsDiscard) throw new BlockDeviceException(95, "the backend does not discard");
        CheckRange(sector, (long)Math.Min(sectorCount, long.MaxValue / 512) * 512);
        var slot = await RentAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var d = new BlkifRequestDiscard { Operation = BlkifOperation.Discard, Id = (ulong)slot.Index, SectorNumber = sector, NrSectors = sectorCount };
            slot.Request = default;
            MemoryMarshal.Write(MemoryMarshal.AsBytes(new Span<BlkifRequest>(ref slot.Request)), in d);
            Check(await SendAsync(slot).ConfigureAwait(false), "discard");
        }
        finally { Return(slot); }
    }

    // ---- xenstore helpers ----

    private Task WriteStateAsync(XenbusState state, CancellationToken ct) =>
        _store.WriteAsync($"{FrontendPath}/state", ((int)state).ToString(CultureInfo.InvariantCulture), cancellationToken: ct);

    private async Task<XenbusState> WaitForBackendAsync(Func<XenbusState, bool> accept, CancellationToken ct)
    {
        int token = Interlocked.Increment(ref s_watchToken);
        await using var watch = await _store.SubscribeAsync($"{BackendPath}/state", $"blkfront-{token}", cancellationToken: ct).ConfigureAwait(false);
        while (await watch.Events.WaitToReadAsync(ct).ConfigureAwait(false))
        {
            while (watch.Events.TryRead(out _)) { }
            var value = await _store.TryReadAsync($"{BackendPath}/state", cancellationToken: ct).ConfigureAwait(false);
            var state = int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n is >= 1 and <= 8 ? (XenbusState)n : XenbusState.Unknown;
            if (accept(state)) return state;
        }
        throw new IOException($"{FrontendPath}: the xenstore connection closed while waiting for the backend");
    }

    private async Task<ulong> ReadNumberAsync(string key, ulong fallback, CancellationToken ct) =>
        ulong.TryParse(await _store.TryReadAsync($"{BackendPath}/{key}", cancellationToken: ct).ConfigureAwait(false), NumberStyles.None, CultureInfo.InvariantCulture, out var v)
            ? v : fallback;

    private async Task<bool> FeatureAsync(string key, CancellationToken ct) =>
        await _store.TryReadAsync($"{BackendPath}/{key}", cancellationToken: ct).ConfigureAwait(false) == "1";

    private static string Num(uint v) => v.ToString(CultureInfo.InvariantCulture);

    /// <summary>Closes the connection (state Closed) and gives back what it can; requests still waiting fail.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_stop.IsCancellationRequested) return;
        _stop.Cancel();
        if (_maintain is not null) { try { await _maintain.ConfigureAwait(false); } catch (OperationCanceledException) { } }
        TearDown();
        try { await WriteStateAsync(XenbusState.Closed, CancellationToken.None).ConfigureAwait(false); }
        catch (Exception e) when (e is XenstoreException or IOException or ObjectDisposedException) { }
        foreach (var slot in _slots)
        {
            if (slot.InFlight) { slot.InFlight = false; slot.Complete(BlkifStatus.Error); }
            for (int i = 0; i < slot.PageCount; i++)
                if (_domain.GrantTable.EndAccess(slot.Grefs[i])) _domain.Pages.Free(slot.Frames[i]);
            if (slot.HasIndirect && _domain.GrantTable.EndAccess(slot.IndirectGref)) _domain.Pages.Free(slot.IndirectFrame);
            slot.PageCount = 0;
            slot.HasIndirect = false;
        }
    }
}

/// <summary>Called with a page index and that page's bytes of a request.</summary>
public delegate void PageAction(int page, Span<byte> data);
