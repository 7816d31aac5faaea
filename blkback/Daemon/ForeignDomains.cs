using XenIo.Hypervisor.Grants;
using XenIo.Hypervisor.Hypercalls;

namespace XenIo.Blkback.Daemon;

/// <summary>One mapping of each guest's memory, shared by all of its vbds and released with the last.</summary>
public sealed class ForeignDomains(HypercallClient hypercalls)
{
    private readonly Dictionary<ushort, (ForeignDomain Domain, int Users)> _domains = [];
    private readonly object _gate = new();

    public HypercallClient Hypercalls => hypercalls;

    public ForeignDomain Acquire(ushort domid)
    {
        lock (_gate)
        {
            if (_domains.TryGetValue(domid, out var e))
            {
                _domains[domid] = (e.Domain, e.Users + 1);
                return e.Domain;
            }
            var d = hypercalls.MapForeign(domid);
            _domains[domid] = (d, 1);
            return d;
        }
    }

    public void Release(ushort domid)
    {
        lock (_gate)
        {
            if (!_domains.TryGetValue(domid, out var e)) return;
            if (e.Users > 1) { _domains[domid] = (e.Domain, e.Users - 1); return; }
            _domains.Remove(domid);
            e.Domain.Dispose();
        }
    }
}
