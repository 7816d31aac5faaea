using System.Runtime.InteropServices;
using XenIo.Blkback.Images;
using XenIo.Blkback.Requests;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Events;
using XenIo.Hypervisor.Grants;
using XenIo.Hypervisor.Memory;
using XenIo.Hypervisor.Rings;

namespace XenIo.Blkback.Rings;

/// <summary>
/// Serves one blkif ring (one queue of a vbd), as a Linux blkback ring thread and its bios do, with a
/// pool of I/O workers so up to a ring's worth of requests are on the disk at once (the frontend's
/// queue depth). The workers take turns (leader and followers): one waits on the event channel, and
/// when the frontend notifies it copies the published requests out of the shared ring once (XSA-155),
/// wakes idle workers for all but one of them and serves that one itself, so a request is not handed
/// from thread to thread before it reaches the disk (each hand-off is a wake-up, tens of microseconds
/// in a VM); a worker that finishes takes the next request straight from the ring.
/// A worker validates the copy before any I/O (<see cref="BlkifRequestValidator"/>), moves the data by
/// persistent grant mapping (zero copy: the image is read into and written from the guest's pages) or by
/// grant copy through its own aligned buffer, and answers with a response whose every byte is set
/// (XSA-216). A bad request is answered with an error; a broken ring (impossible indices, the frontend's
/// event channel gone) stops this queue and reports it once through <c>broken</c>: the vbd disconnects.
/// </summary>
public sealed unsafe class BlkifQueueServer : IDisposable
{
    private const int WaitSliceMs = 250;
    private const uint MaxPersistentGrants = 16384;

    private readonly string _name;
    private readonly ForeignDomain _domain;
    private readonly MappedRingPages _pages;
    private readonly EventChannel _channel;
    private readonly RawImage _image;
    private readonly DiskGeometry _geometry;
    private readonly PersistentGrants? _persistent;
    private readonly Action<string> _broken;
    private readonly object _gate = new();
    private BackRing<BlkifRequest, BlkifResponse> _ring;
    // Under _gate: requests copied out of the ring and not yet taken by a worker; whether a worker is
    // waiting on the event channel (the leader); how many are parked on _workReady (followers); and
    // whether the ring broke (every worker then stops).
    private readonly BlkifRequest[] _work;
    private int _workHead, _workCount;
    private bool _leading;
    private int _followers;
    private bool _ringBroken;
    private readonly SemaphoreSlim _workReady = new(0);
    private readonly Thread[] _workers;
    private volatile bool _stopping;
    private int _reported;
    private long _served, _errors;

    public BlkifQueueServer(string name, ForeignDomain domain, MappedRingPages pages, EventChannel channel, RawImage image,
        bool persistent, int workers, Action<string> broken)
    {
        _name = name;
        _domain = domain;
        _pages = pages;
        _channel = channel;
        _image = image;
        _geometry = image.Geometry;
        _broken = broken;
        _ring = BackRing<BlkifRequest, BlkifResponse>.Attach(pages.Address, pages.Length);
        _work = new BlkifRequest[_ring.Size];
        // Linux keeps max_pgrants (1056) per ring. A frontend cannot name more grants than its table holds, and
        // a full ring of 1 MiB requests needs size × 256: below that, every request would map and unmap its
        // overflow (mmap_lock writes that stall every worker). Bounded so a process stays far from vm.max_map_count.
        _persistent = persistent ? new PersistentGrants(domain, (int)Math.Min(domain.EntryCount, MaxPersistentGrants)) : null;
        _workers = new Thread[Math.Clamp(workers, 1, _ring.Size)];
        for (int i = 0; i < _workers.Length; i++)
            _workers[i] = new Thread(WorkerLoop) { IsBackground = true, Name = $"blkback {name} io{i}" };
    }

    public int RingSize => _ring.Size;

    /// <summary>Our local event channel port.</summary>
    public uint Port => _channel.Port;

    /// <summary>Requests answered (all statuses) and those answered with an error.</summary>
    public long Served => Interlocked.Read(ref _served);

    public long Errors => Interlocked.Read(ref _errors);

    public int PersistentGrantCount => _persistent?.Count ?? 0;

    public void Start()
    {
        foreach (var w in _workers) w.Start();
    }

    /// <summary>What a worker does next, as <see cref="Next"/> decides.</summary>
    private enum Turn { Serve, Lead, Follow, Stop }

    private void WorkerLoop()
    {
        var worker = new IoWorker(_geometry.MaxIndirectSegments);
        try
        {
            while (true)
            {
                switch (Next(out var request))
                {
                    case Turn.Serve:
                        var response = Serve(in request, worker);
                        Respond(in response);
                        break;
                    case Turn.Lead:
                        Lead();
                        break;
                    case Turn.Follow:
                        _workReady.Wait();
                        break;
                    default:
                        return;
                }
            }
        }
        catch (Exception e)
        {
            // Nothing the guest sends should get here; if something does, this vbd goes, not the daemon.
            Report($"I/O worker failed: {e.Message}");
        }
        finally
        {
            worker.Dispose();
        }
    }

    /// <summary>
    /// A worker's next turn: a request to serve (copied out earlier, or now from the ring), else to wait
    /// on the event channel when no other worker does, else to park until woken. Wakes parked workers
    /// for requests it leaves queued, and one to lead when it stops leading to serve.
    /// </summary>
    private Turn Next(out BlkifRequest request)
    {
        request = default;
        int wake;
        lock (_gate)
        {
            if (_stopping || _ringBroken) return Turn.Stop;
            if (_workCount == 0 && !Refill()) return Turn.Stop;
            if (_workCount == 0)
            {
                if (_leading)
                {
                    _followers++;
                    return Turn.Follow;
                }
                _leading = true;
                return Turn.Lead;
            }
            request = _work[_workHead];
            _workHead = (_workHead + 1) % _work.Length;
            _workCount--;
            // Parked workers for the requests left, and one to watch the event channel when nobody does.
            wake = Math.Min(_followers, _workCount + (_leading ? 0 : 1));
            _followers -= wake;
        }
        if (wake > 0) _workReady.Release(wake);
        return Turn.Serve;
    }

    /// <summary>
    /// Copies what the frontend has published into the work queue, asking to be notified of the next
    /// request when there is none (FinalCheck), under <see cref="_gate"/>. False when the ring broke.
    /// </summary>
    private bool Refill()
    {
        while (true)
        {
            while (_workCount < _work.Length && _ring.TryConsumeRequest(out var request))
            {
                _work[(_workHead + _workCount) % _work.Length] = request;
                _workCount++;
            }
            if (_ring.IsBroken)
            {
                StopAll();
                Report($"ring broken: {_ring.Error}");
                return false;
            }
            // FinalCheck: ask for a notification at the next request, then look once more (a check that
            // breaks the ring is seen on the next pass).
            if (_workCount > 0 || (!_ring.FinalCheckForRequests() && !_ring.IsBroken)) return true;
        }
    }

    /// <summary>The ring is unusable: every worker stops, the parked ones woken to see it. Under <see cref="_gate"/>.</summary>
    private void StopAll()
    {
        _ringBroken = true;
        if (_followers > 0) _workReady.Release(_followers);
        _followers = 0;
    }

    /// <summary>Waits on the event channel for the frontend's next notification (a slice at a time, so a stop is seen).</summary>
    private void Lead()
    {
        _channel.Wait(WaitSliceMs);
        var closed = _channel.PeerClosed && !_stopping;
        lock (_gate)
        {
            _leading = false;
            if (closed) StopAll();
        }
        if (closed) Report("the frontend's event channel closed");
    }

    private void Respond(in BlkifResponse response)
    {
        bool notify;
        lock (_gate)
        {
            if (!_ring.TryWriteResponse(response)) return;
            notify = _ring.PushResponses();
        }
        Interlocked.Increment(ref _served);
        if (response.Status != BlkifStatus.Okay) Interlocked.Increment(ref _errors);
        if (notify) _channel.Notify();
    }

    /// <summary>One request from validation to response; never throws for anything the guest sent.</summary>
    private BlkifResponse Serve(in BlkifRequest copy, IoWorker w)
    {
        short status;
        BlkRequest request;
        if (copy.Operation == BlkifOperation.Indirect)
        {
            var indirect = BlkifRequestValidator.AsIndirect(copy);
            status = BlkifRequestValidator.ValidateIndirectHeader(indirect, _geometry, out var plan);
            if (status != BlkifStatus.Okay) return BlkifRequestValidator.ErrorResponse(copy, status);
            status = CopyIndirectSegments(indirect, plan, w);
            if (status != BlkifStatus.Okay) return BlkifRequestValidator.ErrorResponse(copy, status);
            status = BlkifRequestValidator.ValidateIndirectSegments(plan, w.IndirectSegments.AsSpan(0, plan.NrSegments), _geometry, w.Segments, out request);
        }
        else
        {
            status = BlkifRequestValidator.Validate(copy, _geometry, w.Segments, out request);
        }
        if (status != BlkifStatus.Okay) return BlkifRequestValidator.ErrorResponse(copy, status);
        return request.Response(Execute(in request, w));
    }

    /// <summary>Copies the segment entries out of the indirect pages (grant copy: the guest cannot change them afterwards).</summary>
    private short CopyIndirectSegments(in BlkifRequestIndirect indirect, in IndirectPlan plan, IoWorker w)
    {
        var ops = w.Ops.AsSpan(0, plan.IndirectPages);
        int left = plan.NrSegments;
        for (int p = 0; p < plan.IndirectPages; p++)
        {
            int n = Math.Min(left, BlkifLimits.SegmentsPerIndirectFrame);
            ops[p] = GrantCopyOp.FromGrant(_domain.Domid, indirect.IndirectGrefs[p], 0, (uint)(p * DomainMemory.PageSize),
                (ushort)(n * sizeof(BlkifRequestSegment)));
            left -= n;
        }
        _domain.Copy(ops, w.IndirectPages);
        foreach (var op in ops)
            if (op.Status != GrantStatus.Okay) return BlkifStatus.Error;
        var all = MemoryMarshal.Cast<byte, BlkifRequestSegment>(w.IndirectPages.AsSpan());
        all[..plan.NrSegments].CopyTo(w.IndirectSegments);
        return BlkifStatus.Okay;
    }

    private short Execute(in BlkRequest request, IoWorker w)
    {
        int n = request.SegmentCount;
        var segments = w.Segments.AsSpan(0, n);
        var iov = w.Iov.AsSpan(0, n);
        if (n == 0) return BlkRequestExecutor.Execute(request, iov, _image);
        bool toDisk = request.Kind != BlkIoKind.Read;

        if (_persistent is not null)
        {
            // Zero copy: the image is read into / written from the guest's own pages, mapped once.
            int transients = 0;
            short status = BlkifStatus.Okay;
            for (int i = 0; i < n; i++)
            {
                var g = _persistent.Get(segments[i].Gref, out var mapping, out bool transient);
                if (g != GrantStatus.Okay) { status = BlkifStatus.Error; break; }
                if (transient) w.Transients[transients++] = mapping;
                iov[i] = new IoBuffer((nint)(mapping.Address + segments[i].PageOffset), segments[i].Length);
            }
            if (status == BlkifStatus.Okay) status = BlkRequestExecutor.Execute(request, iov, _image);
            for (int i = 0; i < transients; i++) _persistent.Release(w.Transients[i]);
            return status;
        }

        // Grant copy through the worker's aligned buffer: one page per segment, the data at its sector offset.
        byte* buffer = w.Buffer;
        var ops = w.Ops.AsSpan(0, n);
        for (int i = 0; i < n; i++)
        {
            var s = segments[i];
            uint local = (uint)(i * DomainMemory.PageSize + s.PageOffset);
            iov[i] = new IoBuffer((nint)(buffer + local), s.Length);
            ops[i] = toDisk
                ? GrantCopyOp.FromGrant(_domain.Domid, s.Gref, (uint)s.PageOffset, local, (ushort)s.Length)
                : GrantCopyOp.ToGrant(local, _domain.Domid, s.Gref, (uint)s.PageOffset, (ushort)s.Length);
        }
        var span = new Span<byte>(buffer, n * DomainMemory.PageSize);
        if (toDisk)
        {
            _domain.Copy(ops, span);
            foreach (var op in ops)
                if (op.Status != GrantStatus.Okay) return BlkifStatus.Error;
            return BlkRequestExecutor.Execute(request, iov, _image);
        }
        short result = BlkRequestExecutor.Execute(request, iov, _image);
        if (result != BlkifStatus.Okay) return result;
        _domain.Copy(ops, span);
        foreach (var op in ops)
            if (op.Status != GrantStatus.Okay) return BlkifStatus.Error;
        return BlkifStatus.Okay;
    }

    private void Report(string why)
    {
        if (_stopping || Interlocked.Exchange(ref _reported, 1) != 0) return;
        _broken($"{_name}: {why}");
    }

    /// <summary>Stops taking requests, lets the workers finish what they hold, then unmaps everything. Idempotent.</summary>
    public void Dispose()
    {
        if (_stopping) return;
        _stopping = true;
        _workReady.Release(_workers.Length);
        foreach (var w in _workers)
            if (Thread.CurrentThread != w && w.IsAlive) w.Join();
        _persistent?.Dispose();
        _pages.Dispose();
        _channel.Dispose();
        _workReady.Dispose();
    }

    /// <summary>What one I/O worker reuses for every request: no allocation per request.</summary>
    private sealed class IoWorker : IDisposable
    {
        public readonly BlkSegment[] Segments;
        public readonly IoBuffer[] Iov;
        public readonly GrantCopyOp[] Ops;
        public readonly GrantMapping[] Transients;
        public readonly BlkifRequestSegment[] IndirectSegments;
        public readonly byte[] IndirectPages = GC.AllocateArray<byte>(BlkifLimits.MaxIndirectPagesPerRequest * DomainMemory.PageSize, pinned: true);
        private byte* _buffer;
        private readonly int _maxSegments;

        public IoWorker(int maxIndirectSegments)
        {
            _maxSegments = Math.Max(BlkifLimits.MaxSegmentsPerRequest, maxIndirectSegments);
            Segments = new BlkSegment[_maxSegments];
            Iov = new IoBuffer[_maxSegments];
            Ops = new GrantCopyOp[_maxSegments];
            Transients = new GrantMapping[_maxSegments];
            IndirectSegments = new BlkifRequestSegment[Math.Max(1, maxIndirectSegments)];
        }

        /// <summary>Page-aligned (O_DIRECT), one page per segment; allocated on first use.</summary>
        public byte* Buffer
        {
            get
            {
                if (_buffer == null) _buffer = (byte*)NativeMemory.AlignedAlloc((nuint)(_maxSegments * DomainMemory.PageSize), AlignedBufferPool.Alignment);
                return _buffer;
            }
        }

        public void Dispose()
        {
            if (_buffer != null) NativeMemory.AlignedFree(_buffer);
            _buffer = null;
        }
    }
}
