using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using XenIo.Hypervisor.Domains;

namespace XenIo.Guest.Netfront;

/// <summary>
/// Pages of the guest's memory granted to one backend domain for the life of a connection (rings and
/// buffers): allocated from the guest's page allocator, granted once, and given back by
/// <see cref="ReleaseAsync"/>, which ends each grant and frees its page only once the backend no longer
/// uses it (GTF_reading/GTF_writing clear), retrying as Linux's deferred <c>gnttab_end_foreign_access</c>
/// does. A page whose grant cannot be ended stays allocated: the backend may still write it.
/// </summary>
internal sealed class GrantedPages
{
    private readonly GuestDomain _domain;
    private readonly uint[] _frames;
    private readonly uint[] _grefs;
    private readonly nint[] _addresses;
    private int _count;

    public GrantedPages(GuestDomain domain, int capacity)
    {
        _domain = domain;
        _frames = new uint[capacity];
        _grefs = new uint[capacity];
        _addresses = new nint[capacity];
    }

    public int Count => _count;

    /// <summary>Allocates and grants one page to <paramref name="backend"/>; returns its index here.</summary>
    public unsafe int Add(ushort backend, bool readOnly)
    {
        if (_count == _frames.Length) throw new InvalidOperationException("no room for another page");
        if (!_domain.Pages.TryAllocate(out var frame)) throw new InvalidOperationException("the guest has no free pages for netfront's buffers");
        var page = _domain.Memory.Page(frame);
        page.Clear();
        if (!_domain.GrantTable.TryGrantAccess(backend, frame, readOnly, out var gref))
        {
            _domain.Pages.Free(frame);
            throw new InvalidOperationException("the grant table is full");
        }
        _frames[_count] = frame;
        _grefs[_count] = gref;
        _addresses[_count] = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetReference(page));
        return _count++;
    }

    public uint Gref(int index) => _grefs[index];

    public unsafe byte* Address(int index) => (byte*)_addresses[index];

    /// <summary>
    /// Ends every grant and frees its page; grants still in use are retried every 50 ms for
    /// <paramref name="patience"/>, then left allocated with one log line.
    /// </summary>
    public async Task ReleaseAsync(TimeSpan patience, Action<string> log)
    {
        var pending = new List<int>();
        for (var i = 0; i < _count; i++) pending.Add(i);
        var deadline = DateTime.UtcNow + patience;
        while (true)
        {
            pending.RemoveAll(i =>
            {
                if (!_domain.GrantTable.EndAccess(_grefs[i])) return false;
                _domain.Pages.Free(_frames[i]);
                return true;
            });
            if (pending.Count == 0 || DateTime.UtcNow > deadline) break;
            await Task.Delay(50).ConfigureAwait(false);
        }
        if (pending.Count > 0) log($"{pending.Count} granted pages still in use by the backend; left allocated");
        _count = 0;
    }
}
