using System.Globalization;
using System.Net;
using System.Net.Sockets;
using XenIo.Net.Tap;
using XenIo.VSwitch.Core;
using XenIo.VSwitch.Ports;

namespace XenIo.VSwitch.Management;

/// <summary>
/// Builds live ports from <see cref="PortConfig"/>. Options per kind:
/// tap/internal <c>offloads=on|off</c>; uplink: the port name is the host interface;
/// stream <c>listen|connect=unix:/path|tcp:host:port</c>, <c>allow=ip,…</c>, <c>allow-uid=n,…</c>;
/// vxlan <c>local=ip[:port]</c>, <c>vni=n</c>, <c>remotes=ip[:port][/vni],…</c> (IPv6 with a port in brackets, <c>[::1]:4790</c>);
/// patch <c>peer=bridge/port</c> (built in pairs by the reconciler).
/// Bad options throw <see cref="ArgumentException"/> naming the option, value and what is valid. What
/// a port reports as it runs (a refused peer, a bad length prefix, an unconfigured VXLAN remote, a TAP
/// that died) goes to <paramref name="log"/>, once per event rather than per frame.
/// </summary>
public sealed class PortFactory(EpollLoop loop, Action<string>? log = null)
{
    public SwitchPort Create(PortConfig config)
    {
        var o = config.Options;
        switch (config.Kind)
        {
            case "tap":
            case "internal":
                CheckKnown(config, "offloads");
                var offloads = Option(o, "offloads", "on") switch
                {
                    "on" => true,
                    "off" => false,
                    var v => throw Bad("offloads", v, "on|off"),
                };
                var tap = TapDevice.Create(config.Name, offloads);
                var tapPort = config.Kind == "tap" ? new TapPort(tap, loop) : new InternalPort(tap, loop);
                tapPort.Log += Log;
                return tapPort;
            case "uplink":
                CheckKnown(config);
                return new UplinkPort(config.Name, loop);
            case "stream":
                CheckKnown(config, "listen", "connect", "allow", "allow-uid");
                var stream = new StreamPort(config.Name, StreamOptions(o));
                stream.Log += Log;
                return stream;
            case "vxlan":
                CheckKnown(config, "local", "vni", "remotes", "ageing", "maxaddress");
                var vxlan = new VxlanPort(config.Name, VxlanOptions(o));
                vxlan.Log += Log;
                return vxlan;
            default:
                throw new ArgumentException($"port kind {config.Kind} is not built here (patch ports come in pairs)");
        }
    }

    private void Log(string message) => log?.Invoke(message);

    public static (string Bridge, string Port) PatchPeer(PortConfig config)
    {
        CheckKnown(config, "peer");
        var peer = Option(config.Options, "peer", "");
        var slash = peer.IndexOf('/');
        if (slash <= 0 || !SwitchConfigMapping.IsValidName(peer[..slash]) || !SwitchConfigMapping.IsValidName(peer[(slash + 1)..]))
            throw Bad("peer", peer, "bridge/port of the other end");
        return (peer[..slash], peer[(slash + 1)..]);
    }

    private static void CheckKnown(PortConfig config, params string[] known)
    {
        foreach (var k in config.Options.Keys)
            if (!known.Contains(k))
                throw new ArgumentException($"option '{k}' is not known for {config.Kind} ports; valid: {(known.Length == 0 ? "none" : string.Join(", ", known))}");
    }

    private static string Option(IReadOnlyDictionary<string, string> o, string key, string fallback) => o.TryGetValue(key, out var v) ? v : fallback;

    private static ArgumentException Bad(string key, string value, string valid) => new($"option {key}='{value}' is invalid; valid: {valid}");

    private static StreamPortOptions StreamOptions(IReadOnlyDictionary<string, string> o)
    {
        var listen = o.TryGetValue("listen", out var l);
        var connect = o.TryGetValue("connect", out var c);
        if (listen == connect) throw new ArgumentException("stream ports need exactly one of listen=… or connect=… (unix:/path or tcp:host:port)");
        var text = listen ? l! : c!;
        EndPoint endpoint;
        if (text.StartsWith("unix:", StringComparison.Ordinal) && Path.IsPathFullyQualified(text[5..])) endpoint = new UnixDomainSocketEndPoint(text[5..]);
        else if (text.StartsWith("tcp:", StringComparison.Ordinal) && IPEndPoint.TryParse(text[4..], out var ip) && ip.Port != 0) endpoint = ip;
        else throw Bad(listen ? "listen" : "connect", text, "unix:/absolute/path or tcp:address:port");
        var options = new StreamPortOptions(endpoint, listen ? StreamRole.Listen : StreamRole.Connect);
        if (o.TryGetValue("allow", out var allow))
        {
            var addresses = new List<IPAddress>();
            foreach (var a in allow.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                addresses.Add(IPAddress.TryParse(a, out var addr) ? addr : throw Bad("allow", allow, "comma-separated IP addresses"));
            options = options with { AllowedAddresses = addresses };
        }
        if (o.TryGetValue("allow-uid", out var uids))
        {
            var list = new List<uint>();
            foreach (var u in uids.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                list.Add(uint.TryParse(u, NumberStyles.None, CultureInfo.InvariantCulture, out var uid) ? uid : throw Bad("allow-uid", uids, "comma-separated uids"));
            options = options with { AllowedUids = list };
        }
        return options;
    }

    private static VxlanPortOptions VxlanOptions(IReadOnlyDictionary<string, string> o)
    {
        var local = Endpoint(Option(o, "local", ""), "local");
        var vniText = Option(o, "vni", "");
        if (!int.TryParse(vniText, NumberStyles.None, CultureInfo.InvariantCulture, out var vni) || vni > VxlanHeader.MaxVni)
            throw Bad("vni", vniText, $"an integer 0-{VxlanHeader.MaxVni}");
        var remotes = new List<VxlanRemote>();
        var remotesText = Option(o, "remotes", "");
        foreach (var r in remotesText.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var slash = r.IndexOf('/');
            int? remoteVni = null;
            if (slash >= 0)
            {
                if (!int.TryParse(r[(slash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var v) || v > VxlanHeader.MaxVni)
                    throw Bad("remotes", remotesText, "ip[:port][/vni],…");
                remoteVni = v;
            }
            remotes.Add(new VxlanRemote(Endpoint(slash >= 0 ? r[..slash] : r, "remotes"), remoteVni));
        }
        if (remotes.Count == 0) throw Bad("remotes", remotesText, "at least one ip[:port][/vni]");
        // As Linux's vxlan: ageing in seconds, maxaddress the most MACs learned behind the remotes.
        var ageing = Option(o, "ageing", "300");
        if (!int.TryParse(ageing, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) || seconds is < 1 or > 1_000_000)
            throw Bad("ageing", ageing, "seconds, 1-1000000");
        var maxaddress = Option(o, "maxaddress", VtepTable.DefaultLimit.ToString(CultureInfo.InvariantCulture));
        if (!int.TryParse(maxaddress, NumberStyles.None, CultureInfo.InvariantCulture, out var limit) || limit is < 1 or > 1 << 20)
            throw Bad("maxaddress", maxaddress, "an integer 1-1048576");
        return new VxlanPortOptions(local, vni, remotes) { LearningAging = TimeSpan.FromSeconds(seconds), LearningLimit = limit };
    }

    /// <summary>
    /// <c>ip</c>, <c>ip:port</c>, <c>[ipv6]</c> or <c>[ipv6]:port</c>; a bare IPv6 address has no port. No port (or
    /// port 0) is VXLAN's 4789. Parsed as an endpoint, not an address: IPAddress.TryParse takes
    /// <c>[::1]:4790</c> as ::1 and drops the port.
    /// </summary>
    private static IPEndPoint Endpoint(string text, string key)
    {
        if (IPEndPoint.TryParse(text, out var ep)) return ep.Port == 0 ? new IPEndPoint(ep.Address, VxlanHeader.DefaultPort) : ep;
        throw Bad(key, text, "an IP address with an optional :port (IPv6 in brackets with a port: [addr]:port)");
    }
}
