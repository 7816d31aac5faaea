using XenIo.Hypervisor.Abi;

namespace XenIo.Consoled.Rings;

/// <summary>What one pass over a console ring found.</summary>
public enum ConsoleRingStatus
{
    Ok,
    /// <summary>The guest claims <c>prod - cons &gt; size</c>: the ring is garbage and must be ignored.</summary>
    Broken,
}

/// <summary>
/// The backend side of <c>xencons_interface</c> (io/console.h) over a mapped page: consumes
/// <c>out</c> (guest output) and produces into <c>in</c> (guest input). Every index lives in memory
/// the guest can rewrite at any time, so each pass reads each index once into a local, checks it,
/// and copies the bytes out before publishing the new consumer index (XSA-155).
/// </summary>
public sealed unsafe class ConsoleRing
{
    private readonly XenconsInterface* _intf;

    /// <param name="page">Start of the console page; at least 3,088 bytes valid for the ring's lifetime.</param>
    public ConsoleRing(nint page)
    {
        ArgumentOutOfRangeException.ThrowIfZero(page);
        _intf = (XenconsInterface*)page;
    }

    /// <summary>Copies up to <paramref name="destination"/>.Length bytes of guest output and consumes them.</summary>
    public ConsoleRingStatus ReadOutput(Span<byte> destination, out int read)
    {
        read = 0;
        uint cons = Volatile.Read(ref _intf->OutCons);
        uint prod = Volatile.Read(ref _intf->OutProd);
        uint pending = prod - cons;
        if (pending > XenconsInterface.OutSize) return ConsoleRingStatus.Broken;
        int n = (int)Math.Min(pending, (uint)destination.Length);
        if (n == 0) return ConsoleRingStatus.Ok;

        var ring = new ReadOnlySpan<byte>((byte*)_intf + XenconsInterface.OutOffset, XenconsInterface.OutSize);
        int start = (int)(cons & (XenconsInterface.OutSize - 1));
        int first = Math.Min(n, XenconsInterface.OutSize - start);
        ring.Slice(start, first).CopyTo(destination);
        ring[..(n - first)].CopyTo(destination[first..]);
        // The copy must be complete before the guest may reuse the slots (xen_mb() in xenconsoled).
        Interlocked.MemoryBarrier();
        Volatile.Write(ref _intf->OutCons, cons + (uint)n);
        read = n;
        return ConsoleRingStatus.Ok;
    }

    /// <summary>Copies as much of <paramref name="source"/> as fits into <c>in</c> and publishes it.</summary>
    public ConsoleRingStatus WriteInput(ReadOnlySpan<byte> source, out int written)
    {
        written = 0;
        uint cons = Volatile.Read(ref _intf->InCons);
        uint prod = Volatile.Read(ref _intf->InProd);
        uint used = prod - cons;
        if (used > XenconsInterface.InSize) return ConsoleRingStatus.Broken;
        int n = Math.Min(XenconsInterface.InSize - (int)used, source.Length);
        if (n == 0) return ConsoleRingStatus.Ok;

        var ring = new Span<byte>((byte*)_intf + XenconsInterface.InOffset, XenconsInterface.InSize);
        int start = (int)(prod & (XenconsInterface.InSize - 1));
        int first = Math.Min(n, XenconsInterface.InSize - start);
        source[..first].CopyTo(ring[start..]);
        source[first..n].CopyTo(ring);
        // The bytes must be visible before the index that publishes them (wmb()).
        Interlocked.MemoryBarrier();
        Volatile.Write(ref _intf->InProd, prod + (uint)n);
        written = n;
        return ConsoleRingStatus.Ok;
    }
}
