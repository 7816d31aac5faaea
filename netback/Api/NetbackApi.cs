using System.Buffers;
using System.Globalization;
using System.Text.Json;
using XenIo.Hypervisor.Daemons;
using XenIo.Net.Frames;
using XenIo.Netback.Xenbus;
using XenIo.VSwitch.Capture;
using XenIo.VSwitch.Core;
using XenIo.VSwitch.Ports;
using XenIo.VSwitch.Management;

namespace XenIo.Netback.Api;

/// <summary>
/// netback's HTTP+JSON API on <c>&lt;run&gt;/netback.sock</c>: GET /bridges, GET /bridges/{br},
/// GET /bridges/{br}/fdb, POST /bridges/{br}/fdb/flush, GET /stats, GET /capture (streamed pcap/pcapng).
/// </summary>
public sealed class NetbackApi(SwitchReconciler reconciler, Func<IReadOnlyList<string>> configErrors, Action<string> log,
    Func<IReadOnlyList<VifInfo>>? vifs = null)
{
    public async Task HandleAsync(HttpRequest request, HttpResponse response, CancellationToken cancellationToken)
    {
        var parts = request.Segments;
        switch (parts)
        {
            case ["bridges"] when request.Method == "GET":
                await response.WriteJsonAsync(200, Json(w => WriteBridges(w, reconciler.Bridges.Values, details: false))).ConfigureAwait(false);
                return;
            case ["stats"] when request.Method == "GET":
                await response.WriteJsonAsync(200, Json(w => WriteBridges(w, reconciler.Bridges.Values, details: true))).ConfigureAwait(false);
                return;
            case ["bridges", var name, ..]:
                if (reconciler.FindBridge(name) is not { } bridge)
                {
                    await Error(response, 404, $"no bridge {name}").ConfigureAwait(false);
                    return;
                }
                switch (parts.Length, request.Method)
                {
                    case (2, "GET"):
                        await response.WriteJsonAsync(200, Json(w => WriteBridge(w, bridge, details: true))).ConfigureAwait(false);
                        return;
                    case (3, "GET") when parts[2] == "fdb":
                        await response.WriteJsonAsync(200, Json(w => WriteFdb(w, bridge))).ConfigureAwait(false);
                        return;
                    case (4, "POST") when parts[2] == "fdb" && parts[3] == "flush":
                        var flushed = bridge.WithLock(b => b.Fdb.Flush());
                        await response.WriteJsonAsync(200, Json(w => { w.WriteStartObject(); w.WriteNumber("flushed", flushed); w.WriteEndObject(); })).ConfigureAwait(false);
                        return;
                }
                break;
            case ["vifs"] when request.Method == "GET":
                await response.WriteJsonAsync(200, Json(w => WriteVifs(w, vifs?.Invoke() ?? [], null))).ConfigureAwait(false);
                return;
            case ["vifs", var vifName] when request.Method == "GET":
                var all = vifs?.Invoke() ?? [];
                if (!all.Any(v => v.Name == vifName))
                {
                    await Error(response, 404, $"no vif {vifName}").ConfigureAwait(false);
                    return;
                }
                await response.WriteJsonAsync(200, Json(w => WriteVifs(w, all, vifName))).ConfigureAwait(false);
                return;
            case ["mirrors"] when request.Method == "GET":
                await response.WriteJsonAsync(200, Json(w => WriteMirrors(w, reconciler.Mirrors))).ConfigureAwait(false);
                return;
            case ["capture"] when request.Method == "GET":
                await CaptureAsync(request, response, cancellationToken).ConfigureAwait(false);
                return;
            case ["errors"] when request.Method == "GET":
                await response.WriteJsonAsync(200, Json(w =>
                {
                    w.WriteStartArray();
                    foreach (var e in configErrors().Concat(reconciler.Errors)) w.WriteStringValue(e);
                    w.WriteEndArray();
                })).ConfigureAwait(false);
                return;
        }
        await Error(response, 404, $"no endpoint {request.Method} {request.Path}").ConfigureAwait(false);
    }

    private static Task Error(HttpResponse response, int status, string message) => response.WriteErrorAsync(status, message);

    private static byte[] Json(Action<Utf8JsonWriter> body)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true })) body(w);
        return buffer.WrittenSpan.ToArray();
    }

    private static void WriteBridges(Utf8JsonWriter w, IEnumerable<Bridge> bridges, bool details)
    {
        w.WriteStartObject();
        w.WriteStartArray("bridges");
        foreach (var b in bridges.OrderBy(b => b.Name, StringComparer.Ordinal)) WriteBridge(w, b, details);
        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static void WriteBridge(Utf8JsonWriter w, Bridge bridge, bool details)
    {
        w.WriteStartObject();
        w.WriteString("name", bridge.Name);
        w.WriteNumber("fdb_entries", bridge.Fdb.Count);
        w.WriteNumber("fdb_limit", bridge.Fdb.Limit);
        w.WriteNumber("fdb_aging_seconds", (long)bridge.Fdb.Aging.TotalSeconds);
        if (details)
        {
            w.WriteNumber("flooded", bridge.Flooded);
            w.WriteNumber("filtered", bridge.Filtered);
            w.WriteNumber("fdb_learned", bridge.Fdb.Learned);
            w.WriteNumber("fdb_moves", bridge.Fdb.Moves);
            w.WriteNumber("fdb_flaps_damped", bridge.Fdb.FlapsDamped);
            w.WriteNumber("fdb_not_learned_full", bridge.Fdb.NotLearnedFull);
            w.WriteNumber("fdb_rehashes", bridge.Fdb.Rehashes);
        }
        w.WriteStartArray("ports");
        foreach (var p in bridge.Ports.OrderBy(p => p.Name, StringComparer.Ordinal))
        {
            w.WriteStartObject();
            w.WriteString("name", p.Name);
            w.WriteString("kind", p.Kind);
            w.WriteNumber("index", p.Index);
            w.WriteString("admin", p.AdminUp ? "up" : "down");
            w.WriteString("vlan_mode", SwitchConfigMapping.VlanModeText(p.Vlan.Mode));
            w.WriteNumber("tag", p.Vlan.Tag);
            w.WriteString("trunks", p.Vlan.Trunks.ToString());
            w.WriteNumber("mtu", p.Mtu);
            var c = p.Counters;
            w.WriteNumber("rx_packets", c.RxPackets);
            w.WriteNumber("rx_bytes", c.RxBytes);
            w.WriteNumber("tx_packets", c.TxPackets);
            w.WriteNumber("tx_bytes", c.TxBytes);
            w.WriteNumber("drops", c.TotalDrops);
            if (details)
            {
                w.WriteStartObject("drops_by_reason");
                foreach (var (reason, count) in c.DropsByReason())
                    if (count != 0) w.WriteNumber(reason.ToString(), count);
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    /// <summary>GET /vifs: every vif backend with its xenbus states, port counters and the vif's own counters.</summary>
    private static void WriteVifs(Utf8JsonWriter w, IReadOnlyList<VifInfo> vifs, string? only)
    {
        w.WriteStartObject();
        w.WriteStartArray("vifs");
        foreach (var v in vifs)
        {
            if (only is not null && v.Name != only) continue;
            var p = v.Port;
            w.WriteStartObject();
            w.WriteString("name", v.Name);
            w.WriteNumber("domid", v.Domid);
            w.WriteNumber("devid", v.Devid);
            w.WriteString("bridge", v.Bridge);
            w.WriteBoolean("attached", p.Bridge is not null);
            w.WriteString("backend_state", v.BackendState.ToString());
            w.WriteString("frontend_state", v.FrontendState.ToString());
            w.WriteBoolean("connected", p.IsConnected);
            w.WriteNumber("queues", p.QueueCount);
            w.WriteString("mac", MacAddress.Format(v.Settings.Mac));
            if (v.Settings.Rate is { } rate) w.WriteString("rate", $"{rate.BytesPerInterval},{rate.IntervalUsecs}");
            w.WriteNumber("mtu", p.Mtu);
            w.WriteNumber("rx_pending", p.RxPending);
            w.WriteNumber("multicast_groups", p.Filter.MulticastCount);
            if (p.LastFailure is { } failure) w.WriteString("last_failure", failure);
            var c = p.Counters;
            w.WriteNumber("rx_packets", c.RxPackets);
            w.WriteNumber("rx_bytes", c.RxBytes);
            w.WriteNumber("tx_packets", c.TxPackets);
            w.WriteNumber("tx_bytes", c.TxBytes);
            w.WriteNumber("drops", c.TotalDrops);
            w.WriteStartObject("drops_by_reason");
            foreach (var (reason, count) in c.DropsByReason()) w.WriteNumber(reason.ToString(), count);
            w.WriteEndObject();
            w.WriteStartObject("vif");
            foreach (var (name, count) in p.Stats.All()) w.WriteNumber(name, count);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static void WriteFdb(Utf8JsonWriter w, Bridge bridge)
    {
        var (entries, ports) = bridge.WithLock(b => (b.Fdb.Snapshot(), b.Ports.ToDictionary(p => p.Index, p => p.Name)));
        w.WriteStartObject();
        w.WriteString("bridge", bridge.Name);
        w.WriteStartArray("entries");
        foreach (var e in entries.OrderBy(e => e.Vlan).ThenBy(e => e.Mac))
        {
            w.WriteStartObject();
            w.WriteString("mac", MacAddress.Format(e.Mac));
            w.WriteNumber("vlan", e.Vlan);
            w.WriteString("port", ports.TryGetValue(e.Port, out var name) ? name : e.Port.ToString(CultureInfo.InvariantCulture));
            w.WriteBoolean("static", e.Static);
            w.WriteNumber("age_seconds", (long)e.Age.TotalSeconds);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        // Where each MAC behind a VXLAN port lives: its remote tunnel endpoint (Linux's `bridge fdb` "dst").
        w.WriteStartArray("tunnel_entries");
        foreach (var vxlan in bridge.Ports.OfType<VxlanPort>())
        {
            foreach (var e in vxlan.Learned.Snapshot(vxlan.Options).OrderBy(e => e.Mac))
            {
                w.WriteStartObject();
                w.WriteString("port", vxlan.Name);
                w.WriteString("mac", MacAddress.Format(e.Mac));
                w.WriteString("remote", e.Remote.EndPoint.ToString());
                w.WriteNumber("vni", e.Vni);
                w.WriteNumber("age_seconds", (long)e.Age.TotalSeconds);
                w.WriteEndObject();
            }
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static void WriteMirrors(Utf8JsonWriter w, IReadOnlyList<MirrorStatus> mirrors)
    {
        w.WriteStartObject();
        w.WriteStartArray("mirrors");
        foreach (var m in mirrors.OrderBy(m => m.Bridge, StringComparer.Ordinal).ThenBy(m => m.Config.Name, StringComparer.Ordinal))
        {
            w.WriteStartObject();
            w.WriteString("bridge", m.Bridge);
            MirrorConfigJson.WriteFields(w, m.Config);
            w.WriteNumber("captured", m.Captured);
            w.WriteNumber("filtered_out", m.FilteredOut);
            w.WriteNumber("dropped", m.Dropped);
            if (m.Error is { } error) w.WriteString("error", error);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }


    private async Task CaptureAsync(HttpRequest request, HttpResponse response, CancellationToken cancellationToken)
    {
        var q = request.Query;
        if (!q.TryGetValue("bridge", out var bridgeName) || reconciler.FindBridge(bridgeName) is not { } bridge)
        {
            await Error(response, 404, $"no bridge {(q.TryGetValue("bridge", out var b) ? b : "(none given)")}").ConfigureAwait(false);
            return;
        }
        var port = q.TryGetValue("port", out var p) && p.Length > 0 ? p : null;
        if (port is not null && bridge.FindPort(port) is null)
        {
            await Error(response, 404, $"bridge {bridge.Name} has no port {port}").ConfigureAwait(false);
            return;
        }
        var snaplen = PcapWriter.DefaultSnaplen;
        if (q.TryGetValue("snaplen", out var s) && s.Length > 0 && (!int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out snaplen) || snaplen is < 1 or > PcapWriter.DefaultSnaplen))
        {
            await Error(response, 400, $"snaplen '{s}' is invalid; valid: 1-{PcapWriter.DefaultSnaplen}").ConfigureAwait(false);
            return;
        }
        var format = q.TryGetValue("format", out var f) && f.Length > 0 ? f : "pcap";
        if (format is not ("pcap" or "pcapng"))
        {
            await Error(response, 400, $"format '{format}' is invalid; valid: pcap|pcapng").ConfigureAwait(false);
            return;
        }
        var queue = new CaptureQueue();
        var sink = BoundedCaptureSink.Over(queue, format == "pcapng", snaplen);
        Mirror mirror;
        try
        {
            mirror = new Mirror($"api-{Guid.NewGuid():N}", sink, new MirrorSelection(port is null ? null : new HashSet<string> { port }), snaplen,
                q.TryGetValue("filter", out var filter) ? filter : null);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException)
        {
            sink.Dispose();
            await Error(response, 400, $"filter: {e.Message}").ConfigureAwait(false);
            return;
        }
        log($"capture on {bridge.Name}{(port is null ? "" : "/" + port)} started");
        using var gone = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var watcher = Task.CompletedTask;
        try
        {
            // Inside the try: a client gone before the head is written still has its mirror disposed.
            await response.StartChunkedAsync(200, format == "pcapng" ? "application/x-pcapng" : "application/vnd.tcpdump.pcap").ConfigureAwait(false);
            mirror.Attach(bridge);
            watcher = WatchDisconnect(response, gone);
            while (!gone.IsCancellationRequested)
            {
                ReadOnlyMemory<byte> chunk;
                try
                {
                    chunk = await queue.TakeAsync(TimeSpan.FromMilliseconds(100), gone.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
                await response.WriteChunkAsync(chunk, gone.Token).ConfigureAwait(false);
            }
        }
        finally
        {
            mirror.Dispose();
            log($"capture on {bridge.Name}{(port is null ? "" : "/" + port)} ended: {mirror.Captured} frames, {sink.Dropped} dropped for a slow reader");
            await gone.CancelAsync().ConfigureAwait(false);
            await watcher.ConfigureAwait(false);
        }
    }

    /// <summary>The client ends a capture by closing its end: a read returns 0 (or fails).</summary>
    private static async Task WatchDisconnect(HttpResponse response, CancellationTokenSource gone)
    {
        if (response.Client is not { } client) return;
        var one = new byte[1];
        try
        {
            while (await client.ReceiveAsync(one, System.Net.Sockets.SocketFlags.None, gone.Token).ConfigureAwait(false) > 0) { }
        }
        catch (Exception) { }
        try { await gone.CancelAsync().ConfigureAwait(false); }
        catch (ObjectDisposedException) { }
    }
}
