using Microsoft.Extensions.Logging;
using XenIo.Hypervisor.Store.Transports;

namespace XenIo.Hypervisor.Store;

// Introduced domains: each talks over its own ring, so its identity is the ring's, never its word.
public sealed partial class Xenstored
{
    private const ushort DomIdSelf = 0x7FF0;

    private sealed class IntroducedDomain(ushort domId, XenstoreDomainRing ring, XenstoreConnection connection)
    {
        public ushort DomId { get; } = domId;
        public XenstoreDomainRing Ring { get; } = ring;
        public XenstoreConnection Connection { get; } = connection;
    }

    private readonly Dictionary<ushort, IntroducedDomain> _domains = [];

    /// <summary>The connection serving an introduced domain (tests inspect its bounds).</summary>
    internal XenstoreConnection? ConnectionOf(ushort domId)
    {
        lock (_gate) return _domains.TryGetValue(domId, out var d) ? d.Connection : null;
    }

    public bool IsIntroduced(ushort domId)
    {
        lock (_gate) return _domains.ContainsKey(domId);
    }

    /// <summary>
    /// Starts serving domain <paramref name="domId"/> on its mapped ring (what XS_INTRODUCE does once the
    /// mapper has mapped the page): creates <c>/local/domain/&lt;id&gt;</c> owned by the domain and fires
    /// <c>@introduceDomain</c>. False if the domain is already introduced (or is dom0).
    /// </summary>
    public bool IntroduceDomain(ushort domId, XenstoreDomainRing ring)
    {
        lock (_gate)
        {
            if (domId == 0 || domId >= DomIdSelf || _domains.ContainsKey(domId)) return false;
            var stream = new XenstoreRingStream(ring.Page, ring.Doorbell, isDaemon: true, $"ring");
            var conn = Attach(stream, domId);
            _domains[domId] = new IntroducedDomain(domId, ring, conn);
            var path = XenstorePath.DomainPath(domId);
            var perms = new[] { new XenstorePermission(domId, XenstoreAccess.None) };
            if (_nodes.TryGetValue(path, out var existing))
            {
                AdjustCount(existing.Owner, -1);
                existing.Perms = perms;
                existing.Generation = ++_generation;
                AdjustCount(domId, +1);
            }
            else CreateDirect(path, [], perms);
            FireWatches(path, _nodes[path], exact: false, oldPerms: null);
            FireSpecial(XenstorePath.IntroduceDomain);
            _ = Task.Run(() => conn.RunAsync(CancellationToken.None));
            _logger.LogInformation("xenstored: introduced domain {DomId}", domId);
            return true;
        }
    }

    /// <summary>Stops serving a domain (XS_RELEASE): its watches go, its ring is released, @releaseDomain fires.</summary>
    public bool ReleaseDomain(ushort domId)
    {
        lock (_gate)
        {
            if (!_domains.Remove(domId, out var domain)) return false;
            domain.Connection.Watches.Clear();
            domain.Connection.Close();
            domain.Ring.Dispose();
            FireSpecial(XenstorePath.ReleaseDomain);
            _logger.LogInformation("xenstored: released domain {DomId}", domId);
            return true;
        }
    }

    /// <summary>"domid\0gfn\0port\0": map the guest's page through the mapper and serve it.</summary>
    private XsError DoIntroduce(ReadOnlySpan<byte> payload, ref PayloadBuilder body)
    {
        if (XsdCodec.CountStrings(payload) < 3) return XsError.EINVAL;
        var rest = payload;
        XsdCodec.TryNextString(ref rest, out var rawDom);
        XsdCodec.TryNextString(ref rest, out var rawGfn);
        XsdCodec.TryNextString(ref rest, out var rawPort);
        if (!XsdCodec.TryParseDomId(rawDom, out var domId) || domId == 0 || domId >= DomIdSelf) return XsError.EINVAL;
        if (!XsdCodec.TryParseUInt(rawGfn, out var gfn)) return XsError.EINVAL;
        if (!XsdCodec.TryParseUInt(rawPort, out var port) || port == 0 || port > uint.MaxValue) return XsError.EINVAL;
        if (_domains.ContainsKey(domId)) return Ok(ref body); // introducing again is harmless
        if (Mapper is null) return XsError.ENOSYS;
        XenstoreDomainRing? ring;
        try
        {
            if (!Mapper.TryMap(domId, gfn, (uint)port, out ring)) return XsError.EINVAL;
        }
        catch (Exception e)
        {
            _logger.LogWarning("xenstored: mapping domain {DomId}'s ring failed: {Reason}", domId, e.Message);
            return XsError.EINVAL;
        }
        if (!IntroduceDomain(domId, ring))
        {
            ring.Dispose();
            return XsError.EINVAL;
        }
        return Ok(ref body);
    }

    private XsError DoRelease(ReadOnlySpan<byte> payload, ref PayloadBuilder body)
    {
        if (!XsdCodec.TryOneArg(payload, out var arg) || !XsdCodec.TryParseDomId(arg, out var domId) || domId == 0)
            return XsError.EINVAL;
        return ReleaseDomain(domId) ? Ok(ref body) : XsError.ENOENT;
    }

    /// <summary>XS_RESUME: the domain resumed after suspend; nothing is kept per domain for it, so only checked.</summary>
    private XsError DoResume(ReadOnlySpan<byte> payload, ref PayloadBuilder body)
    {
        if (!XsdCodec.TryOneArg(payload, out var arg) || !XsdCodec.TryParseDomId(arg, out var domId) || domId == 0)
            return XsError.EINVAL;
        return _domains.ContainsKey(domId) ? Ok(ref body) : XsError.ENOENT;
    }

    private XsError DoIsDomainIntroduced(ReadOnlySpan<byte> payload, ref PayloadBuilder body)
    {
        if (!XsdCodec.TryOneArg(payload, out var arg) || !XsdCodec.TryParseDomId(arg, out var domId)) return XsError.EINVAL;
        body.Append(domId == 0 || domId == DomIdSelf || _domains.ContainsKey(domId) ? "T\0"u8 : "F\0"u8);
        return XsError.None;
    }
}
