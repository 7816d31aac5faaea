using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using XenIo.Guest.Interop;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Events;
using XenIo.Hypervisor.Memory;
using XenIo.Hypervisor.Rings;

namespace XenIo.Guest.Blkfront.Ring;

/// <summary>
/// One blkif ring of a connection (Linux's <c>blkfront_ring_info</c>): 2^order pages of the domain's
/// memory granted to the backend (mapped side by side when there are several), an unbound event channel
/// for the backend to bind, and a thread that takes responses and completes their slots. Lives for one
/// connection: a backend restart tears it down and the device builds a new one; the slots stay.
/// </summary>
internal sealed unsafe class BlkfrontQueue : IDisposable
{
    private const int WaitSliceMs = 250;

    private readonly GuestDomain _domain;
    private readonly BlkRequestSlot[] _slots;
    private readonly Action<string> _lost;
    private readonly uint[] _frames;
    private readonly uint[] _refs;
    private readonly nint _region;
    private readonly object _gate = new();
    private FrontRing<BlkifRequest, BlkifResponse> _ring;
    private readonly BlkRequestSlot[] _done;
    private readonly short[] _doneStatus;
    private readonly Thread _thread;
    private volatile bool _stopping;
    private int _reported;

    public BlkfrontQueue(GuestDomain domain, ushort backendId, int index, int order, BlkRequestSlot[] slots, Action<string> lost)
    {
        _domain = domain;
        _slots = slots;
        _lost = lost;
        Index = index;
        int pages = 1 << order;
        _frames = new uint[pages];
        _refs = new uint[pages];
        int granted = 0;
        try
        {
            for (; granted < pages; granted++)
            {
                _frames[granted] = domain.Pages.Allocate();
                domain.Memory.Page(_frames[granted]).Clear();
                _refs[granted] = domain.GrantTable.GrantAccess(backendId, _frames[granted], readOnly: false);
            }
            if (pages == 1)
            {
                _region = PagePointer(domain.Memory, _frames[0]);
            }
            else
            {
                // The frames are wherever the allocator found them: lay them side by side for the ring code.
                nuint length = (nuint)(pages * DomainMemory.PageSize);
                _region = Libc.Blkfront.MMap(0, length, Libc.Blkfront.PROT_NONE, Libc.Blkfront.MAP_PRIVATE | Libc.Blkfront.MAP_ANONYMOUS, -1, 0);
                if (_region == Libc.Blkfront.MAP_FAILED) throw new IOException($"reserving a ring: errno {Marshal.GetLastPInvokeError()}");
                int fd = (int)domain.Memory.Handle.DangerousGetHandle();
                for (int i = 0; i < pages; i++)
                {
                    nint at = _region + i * DomainMemory.PageSize;
                    if (Libc.Blkfront.MMap(at, DomainMemory.PageSize, Libc.Blkfront.PROT_READ | Libc.Blkfront.PROT_WRITE,
                            Libc.Blkfront.MAP_SHARED | Libc.Blkfront.MAP_FIXED, fd, (long)_frames[i] << DomainMemory.PageShift) != at)
                        throw new IOException($"mapping ring page {i}: errno {Marshal.GetLastPInvokeError()}");
                }
            }
            _ring = FrontRing<BlkifRequest, BlkifResponse>.Init(_region, pages * DomainMemory.PageSize);
            Channel = domain.Hypercalls.AllocUnbound(backendId);
        }
        catch
        {
            ReleasePages(granted);
            throw;
        }
        _done = new BlkRequestSlot[_ring.Size];
        _doneStatus = new short[_ring.Size];
        _thread = new Thread(ResponseLoop) { IsBackground = true, Name = $"blkfront q{index}" };
    }

    public int Index { get; }

    public int Size => _ring.Size;

    public EventChannel Channel { get; }

    public IReadOnlyList<uint> RingRefs => _refs;

    public void Start() => _thread.Start();

    /// <summary>Puts a slot's request on the ring and rings the doorbell if the backend asked. The device guarantees a free ring slot.</summary>
    public void Submit(BlkRequestSlot slot)
    {
        bool notify;
        lock (_gate)
        {
            if (!_ring.TryWriteRequest(slot.Request)) throw new InvalidOperationException("blkfront ring full: more slots than ring entries");
            notify = _ring.PushRequests();
        }
        if (notify) Channel.Notify();
    }

    private void ResponseLoop()
    {
        try
        {
            while (!_stopping)
            {
                int n = 0;
                bool more;
                lock (_gate)
                {
                    while (n < _done.Length && _ring.TryConsumeResponse(out var rsp))
                    {
                        // The backend is dom0, but a response for nothing we sent is still dropped, not trusted.
                        if (rsp.Id >= (ulong)_slots.Length) continue;
                        var slot = _slots[(int)rsp.Id];
                        if (slot.Queue != Index || !slot.InFlight) continue;
                        slot.InFlight = false;
                        _done[n] = slot;
                        _doneStatus[n++] = rsp.Status;
                    }
                    if (_ring.IsBroken) { Lose($"ring broken: {_ring.Error}"); return; }
                    more = n > 0 || _ring.FinalCheckForResponses();
                }
                for (int i = 0; i < n; i++)
                {
                    var slot = _done[i];
                    _done[i] = null!;
                    slot.Complete(_doneStatus[i]);
                }
                if (more) continue;
                Channel.Wait(WaitSliceMs);
                if (Channel.PeerClosed && !_stopping)
                {
                    Lose("the backend's event channel closed");
                    return;
                }
            }
        }
        catch (Exception e)
        {
            Lose($"response thread failed: {e.Message}");
        }
    }

    private void Lose(string why)
    {
        if (_stopping || Interlocked.Exchange(ref _reported, 1) != 0) return;
        _lost(why);
    }

    private static byte* PagePointerRaw(DomainMemory memory, uint frame) =>
        (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(memory.Page(frame)));

    internal static nint PagePointer(DomainMemory memory, uint frame) => (nint)PagePointerRaw(memory, frame);

    private void ReleasePages(int granted)
    {
        if (_frames.Length > 1 && _region != 0 && _region != Libc.Blkfront.MAP_FAILED)
            Libc.Blkfront.MUnmap(_region, (nuint)(_frames.Length * DomainMemory.PageSize));
        for (int i = 0; i < granted; i++)
        {
            // A ring the backend still maps (it has not unmapped yet, or died holding it until hyperd releases it)
            // cannot be taken back: leak the frame rather than reuse a page the backend may still write.
            if (_domain.GrantTable.EndAccess(_refs[i])) _domain.Pages.Free(_frames[i]);
        }
    }

    /// <summary>Stops the response thread (slots still in flight stay so) and gives the ring back.</summary>
    public void Dispose()
    {
        if (_stopping) return;
        _stopping = true;
        if (Thread.CurrentThread != _thread && _thread.IsAlive) _thread.Join();
        try { _domain.Hypercalls.Close(Channel.Port); }
        catch (Exception e) when (e is IOException or InvalidDataException) { }
        Channel.Dispose();
        ReleasePages(_frames.Length);
    }
}
