using System.Runtime.InteropServices;
using XenIo.Blkback.Interop;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Grants;
using XenIo.Hypervisor.Memory;

namespace XenIo.Blkback.Rings;

/// <summary>
/// A frontend's ring pages (ring-ref0..N), each grant-mapped, then shown once more side by side in one
/// reserved range so the ring code sees one contiguous <c>blkif_sring</c>, as Linux's
/// <c>xenbus_map_ring_valloc</c> does for a multi-page ring. <c>mremap</c> with an old size of 0 makes a
/// second mapping of the same shared page; the grant mapping itself stays and holds the pin.
/// </summary>
public sealed unsafe class MappedRingPages : IDisposable
{
    private readonly ForeignDomain _domain;
    private readonly GrantMapping[] _maps;
    private int _disposed;

    private MappedRingPages(ForeignDomain domain, GrantMapping[] maps, nint address)
    {
        _domain = domain;
        _maps = maps;
        Address = address;
    }

    public nint Address { get; }

    public int Length => _maps.Length * DomainMemory.PageSize;

    /// <summary>Maps every ref writable (a ring is written both ways); null and the reason when one cannot be mapped.</summary>
    public static MappedRingPages? TryMap(ForeignDomain domain, IReadOnlyList<uint> refs, out string error)
    {
        var maps = new GrantMapping[refs.Count];
        int mapped = 0;
        nint reserved = Libc.MAP_FAILED;
        nuint length = (nuint)(refs.Count * DomainMemory.PageSize);
        try
        {
            for (; mapped < refs.Count; mapped++)
            {
                var status = domain.Map(refs[mapped], readOnly: false, out maps[mapped]);
                if (status != GrantStatus.Okay)
                {
                    error = $"ring-ref {refs[mapped]}: {status}";
                    return null;
                }
            }
            reserved = Libc.MMap(0, length, Libc.PROT_NONE, Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS, -1, 0);
            if (reserved == Libc.MAP_FAILED)
            {
                error = $"reserving {length} bytes: errno {Marshal.GetLastPInvokeError()}";
                return null;
            }
            for (int i = 0; i < maps.Length; i++)
            {
                nint at = reserved + i * DomainMemory.PageSize;
                if (Libc.MRemap((nint)maps[i].Address, 0, DomainMemory.PageSize, Libc.MREMAP_MAYMOVE | Libc.MREMAP_FIXED, at) != at)
                {
                    error = $"placing ring page {i}: errno {Marshal.GetLastPInvokeError()}";
                    return null;
                }
            }
            var result = new MappedRingPages(domain, maps, reserved);
            reserved = Libc.MAP_FAILED;
            mapped = 0;
            error = "";
            return result;
        }
        finally
        {
            if (reserved != Libc.MAP_FAILED) Libc.MUnmap(reserved, length);
            for (int i = 0; i < mapped; i++) domain.Unmap(maps[i]);
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        Libc.MUnmap(Address, (nuint)Length);
        foreach (var m in _maps) _domain.Unmap(m);
    }
}
