using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;

namespace XenIo.Hypervisor.Store.Transports;

/// <summary>
/// A mapper for rings that live in this process (tests, benchmarks, in-process guests): a ring page and
/// its daemon-side doorbell are offered for a (domid, gfn, port) triple, and INTRODUCE with the same
/// triple takes them. Anything not offered fails to map, as an unknown gfn would.
/// </summary>
public sealed class InProcessDomainMapper : IXenstoreDomainMapper
{
    private readonly ConcurrentDictionary<(ushort, ulong, uint), XenstoreDomainRing> _offered = new();

    public void Offer(ushort domId, ulong gfn, uint port, XenstoreDomainRing ring) => _offered[(domId, gfn, port)] = ring;

    public bool TryMap(ushort domId, ulong gfn, uint remotePort, [NotNullWhen(true)] out XenstoreDomainRing? ring) =>
        _offered.TryRemove((domId, gfn, remotePort), out ring);
}
