using XenIo.Hypervisor.Abi;

namespace XenIo.Hypervisor.Rings;

/// <summary>
/// The guest side of <c>xencons_interface</c>: produces into <c>out</c>, consumes <c>in</c>. The mirror
/// of consoled's <c>ConsoleRing</c>: the guest agent's console frontend and in-process test guests use it.
/// </summary>
public sealed unsafe class ConsoleFrontendRing
{
    private readonly XenconsInterface* _intf;

    public ConsoleFrontendRing(nint page)
    {
        ArgumentOutOfRangeException.ThrowIfZero(page);
        _intf = (XenconsInterface*)page;
    }

    /// <summary>Copies as much of <paramref name="source"/> as fits into <c>out</c>; returns the count.</summary>
    public int WriteOutput(ReadOnlySpan<byte> source)
    {
        uint cons = Volatile.Read(ref _intf->OutCons);
        uint prod = Volatile.Read(ref _intf->OutProd);
        int used = (int)Math.Min(prod - cons, (uint)XenconsInterface.OutSize);
        int n = Math.Min(XenconsInterface.OutSize - used, source.Length);
        if (n == 0) return 0;
        var ring = new Span<byte>((byte*)_intf + XenconsInterface.OutOffset, XenconsInterface.OutSize);
        int start = (int)(prod & (XenconsInterface.OutSize - 1));
        int first = Math.Min(n, XenconsInterface.OutSize - start);
        source[..first].CopyTo(ring[start..]);
        source[first..n].CopyTo(ring);
        Interlocked.MemoryBarrier();
        Volatile.Write(ref _intf->OutProd, prod + (uint)n);
        return n;
    }

    /// <summary>Moves up to <paramref name="destination"/>.Length bytes out of <c>in</c>; returns the count.</summary>
    public int ReadInput(Span<byte> destination)
    {
        uint cons = Volatile.Read(ref _intf->InCons);
        uint prod = Volatile.Read(ref _intf->InProd);
        int pending = (int)Math.Min(prod - cons, (uint)XenconsInterface.InSize);
        int n = Math.Min(pending, destination.Length);
        if (n == 0) return 0;
        var ring = new ReadOnlySpan<byte>((byte*)_intf + XenconsInterface.InOffset, XenconsInterface.InSize);
        int start = (int)(cons & (XenconsInterface.InSize - 1));
        int first = Math.Min(n, XenconsInterface.InSize - start);
        ring.Slice(start, first).CopyTo(destination);
        ring[..(n - first)].CopyTo(destination[first..]);
        Interlocked.MemoryBarrier();
        Volatile.Write(ref _intf->InCons, cons + (uint)n);
        return n;
    }
}
