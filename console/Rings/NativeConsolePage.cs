using System.Runtime.InteropServices;

namespace XenIo.Consoled.Rings;

/// <summary>
/// A zeroed, page-aligned 4 KiB block of native memory holding a <c>xencons_interface</c>, for a
/// console whose both ends are in this process (tests, benchmarks). A guest's real page is a
/// mapping of its memory and comes from the hypervisor core.
/// </summary>
public sealed unsafe class NativeConsolePage : IDisposable
{
    public const int PageSize = 4096;
    private void* _page;

    public NativeConsolePage()
    {
        _page = NativeMemory.AlignedAlloc(PageSize, PageSize);
        NativeMemory.Clear(_page, PageSize);
    }

    public nint Address => _page is null ? throw new ObjectDisposedException(nameof(NativeConsolePage)) : (nint)_page;

    public void Dispose()
    {
        if (_page is null) return;
        NativeMemory.AlignedFree(_page);
        _page = null;
    }
}
