using XenIo.Hypervisor.Abi;
using XenIo.TestPeer.Netback;
using Xunit;
using static XenIo.Integration.Tests.Netback.VifFrames;

namespace XenIo.Integration.Tests.Netback;

/// <summary>
/// Frames between two agent-less domains whose netfront the test plays: vif → bridge → vif, every
/// byte checked, offload metadata kept, anti-spoofing, multi-queue with split event channels, the
/// credit limit, a frontend that breaks its ring, and a netback restart.
/// </summary>
[Collection("netback-vifs")]
public sealed class VifDataPathTests
{
    private const string MacA = "00:16:3e:00:00:0a";
    private const string MacB = "00:16:3e:00:00:0b";
    private const string MacC = "00:16:3e:00:00:0c";

    [Fact]
    public async Task Frames_cross_vif_bridge_vif_byte_for_byte_with_checksum_and_gso_metadata()
    {
        await using var h = await VifHarness.StartAsync();
        var (ra, ga) = await h.CreateGuestAsync("a", MacA, "198.18.0.1");
        var (rb, gb) = await h.CreateGuestAsync("b", MacB, "198.18.0.2");
        var fa = h.Frontend(ra, ga, split: true);
        var fb = h.Frontend(rb, gb, split: false);
        await h.ConnectAsync(fa);
        await h.ConnectAsync(fb);
        fa.PostRx();
        fb.PostRx();
        var rng = new Random(1234);

        // Plain frames both ways, sizes from the minimum to the MTU.
        for (var i = 0; i < 300; i++)
        {
            var (from, to, dst, src) = i % 2 == 0 ? (fa, fb, MacB, MacA) : (fb, fa, MacA, MacB);
            var frame = Random(dst, src, rng.Next(60, 1515), rng);
            Send(from, frame);
            var got = Receive(to);
            Assert.NotNull(got);
            Assert.Equal(frame, got.Value.Frame);
            Assert.Equal(NetRxFlags.None, got.Value.Flags & (NetRxFlags.CsumBlank | NetRxFlags.ExtraInfo | NetRxFlags.MoreData));
        }

        // A 60 KiB TSO frame (IPv4 and IPv6) in 4 KiB slots: one frame, GSO extra and csum_blank kept.
        foreach (var v6 in new[] { false, true })
        {
            var tcp = Tcp(MacB, MacA, v6, v6 ? "fd00::1" : "198.18.0.1", v6 ? "fd00::2" : "198.18.0.2", 60_000, rng);
            Send(fa, tcp, NetTxFlags.CsumBlank | NetTxFlags.DataValidated, GsoExtra(v6, 1448));
            var got = Receive(fb);
            Assert.NotNull(got);
            Assert.Equal(tcp, got.Value.Frame);
            Assert.True(got.Value.Flags.HasFlag(NetRxFlags.CsumBlank) && got.Value.Flags.HasFlag(NetRxFlags.ExtraInfo));
            Assert.Equal(NetifExtraType.Gso, got.Value.Gso.Type);
            Assert.Equal(v6 ? NetifGsoType.TcpV6 : NetifGsoType.TcpV4, got.Value.Gso.GsoType);
            Assert.Equal(1448, got.Value.Gso.GsoSize);
        }

        // Checksum states: csum_blank alone, data_validated alone.
        var small = Tcp(MacB, MacA, false, "198.18.0.1", "198.18.0.2", 100, rng);
        Send(fa, small, NetTxFlags.CsumBlank);
        var partial = Receive(fb);
        Assert.Equal(small, partial!.Value.Frame);
        Assert.Equal(NetRxFlags.CsumBlank | NetRxFlags.DataValidated, partial.Value.Flags);
        Send(fa, small, NetTxFlags.DataValidated);
        Assert.Equal(NetRxFlags.DataValidated, Receive(fb)!.Value.Flags);

        // Headers split over tiny fragments: 18 slots of 7 bytes arrive as one frame...
        var tiny = Random(MacB, MacA, 7 * 18, rng);
        Send(fa, tiny, fragment: 7);
        Assert.Equal(tiny, Receive(fb)!.Value.Frame);
        // ...19 slots are answered with an error and dropped, and the vif stays up.
        var errorsBefore = fa.TxErrors;
        Send(fa, Random(MacB, MacA, 7 * 19, rng), fragment: 7);
        var deadline = DateTime.UtcNow + VifHarness.Limit;
        while (fa.TxErrors == errorsBefore && DateTime.UtcNow < deadline) { fa.WaitTx(20); fa.ReapTx(); }
        Assert.True(fa.TxErrors > errorsBefore);
        Assert.Equal(1, h.Port(fa.Domid).Stats.TxTooManySlots);

        // Anti-spoofing: a foreign source MAC and a foreign source IP do not leave the vif.
        Send(fa, Random(MacB, "00:16:3e:00:00:99", 100, rng));
        Send(fa, Udp(MacB, MacA, "198.18.0.99", "198.18.0.2", 1000, 50, rng));
        var marker = Random(MacB, MacA, 80, rng);
        Send(fa, marker);
        Assert.Equal(marker, Receive(fb)!.Value.Frame); // nothing spoofed came before it
        Assert.Equal(2, h.Port(fa.Domid).Stats.TxSpoofDrops);

        var port = h.Port(fa.Domid);
        Assert.Equal("vif", port.Kind);
        Assert.True(port.Counters.RxPackets >= 150);
        Assert.True(h.Port(fb.Domid).Counters.TxPackets >= 150);
        Assert.Equal(2, h.Port(fa.Domid).Stats.TxGsoFrames);
    }

    [Fact]
    public async Task Multi_queue_vif_with_split_event_channels_spreads_flows_and_loses_none()
    {
        await using var h = await VifHarness.StartAsync(maxQueues: 2);
        var (ra, ga) = await h.CreateGuestAsync("a", MacA);
        var (rb, gb) = await h.CreateGuestAsync("b", MacB);
        var q0 = h.Frontend(ra, ga, split: true);
        var q1 = h.Frontend(ra, ga, split: true);
        var fb = h.Frontend(rb, gb, split: false);
        Assert.Equal("2", await h.Dom0.ReadAsync($"{VifHarness.BackendPath(ra.Domid)}/multi-queue-max-queues"));
        var keys = new Dictionary<string, string> { ["multi-queue-num-queues"] = "2" };
        foreach (var (k, v) in q0.FrontendKeys()) keys[k.Contains("ring-ref") || k.StartsWith("event-channel") ? $"queue-0/{k}" : k] = v;
        foreach (var (k, v) in q1.FrontendKeys()) if (k.Contains("ring-ref") || k.StartsWith("event-channel")) keys[$"queue-1/{k}"] = v;
        await h.ConnectAsync(q0, keys);
        await h.ConnectAsync(fb);
        Assert.Equal(2, h.Port(ra.Domid).QueueCount);
        q0.PostRx();
        q1.PostRx();
        fb.PostRx();
        var rng = new Random(5);

        // Both queues send; b gets everything.
        var sent = new List<byte[]>();
        for (var i = 0; i < 64; i++)
        {
            var frame = Udp(MacB, MacA, "198.18.0.1", "198.18.0.2", (ushort)(1000 + i), 200, rng);
            Send(i % 2 == 0 ? q0 : q1, frame);
            sent.Add(frame);
        }
        var got = new List<byte[]>();
        for (var i = 0; i < 64; i++) got.Add(Receive(fb)!.Value.Frame);
        Assert.Equal(sent.Select(Convert.ToHexString).Order(), got.Select(Convert.ToHexString).Order());

        // b sends 64 flows to a: hashed over both queues, none lost.
        var back = new HashSet<string>();
        for (var i = 0; i < 64; i++)
        {
            var frame = Udp(MacA, MacB, "198.18.0.2", "198.18.0.1", (ushort)(2000 + i), 100, rng);
            Send(fb, frame);
            back.Add(Convert.ToHexString(frame));
        }
        var perQueue = new int[2];
        var deadline = DateTime.UtcNow + VifHarness.Limit;
        while (back.Count > 0 && DateTime.UtcNow < deadline)
        {
            for (var q = 0; q < 2; q++)
            {
                var got1 = Receive(q == 0 ? q0 : q1, 20);
                if (got1 is null) continue;
                Assert.True(back.Remove(Convert.ToHexString(got1.Value.Frame)));
                perQueue[q]++;
            }
        }
        Assert.Empty(back);
        Assert.True(perQueue[0] > 0 && perQueue[1] > 0, $"flows per queue: {perQueue[0]}, {perQueue[1]}");
    }

    [Fact]
    public async Task A_frontend_that_overflows_its_ring_is_disconnected_others_keep_forwarding_and_it_can_reconnect()
    {
        await using var h = await VifHarness.StartAsync();
        var (ra, ga) = await h.CreateGuestAsync("a", MacA);
        var (rb, gb) = await h.CreateGuestAsync("b", MacB);
        var (rc, gc) = await h.CreateGuestAsync("c", MacC);
        var fa = h.Frontend(ra, ga, split: false);
        var fb = h.Frontend(rb, gb, split: true);
        var fc = h.Frontend(rc, gc, split: false);
        foreach (var f in new[] { fa, fb, fc })
        {
            await h.ConnectAsync(f);
            f.PostRx();
        }
        var rng = new Random(9);

        fa.PokeRequestProducer(tx: true, fa.TxResponseConsumer + 1000);
        await h.WaitBackendStateAsync(ra.Domid, 5);
        Assert.Contains(h.Log, l => l.Contains("RequestProducerOverflow") && l.Contains($"domain {ra.Domid}"));
        Assert.False(h.Port(ra.Domid).IsConnected);

        for (var i = 0; i < 50; i++)
        {
            var frame = Random(MacC, MacB, rng.Next(60, 1500), rng);
            Send(fb, frame);
            Assert.Equal(frame, Receive(fc)!.Value.Frame);
        }

        // The frontend starts over: Closed, Initialising, new rings, Connected.
        var fe = VifHarness.FrontendPath(ra.Domid);
        await h.Dom0.WriteAsync($"{fe}/state", "6");
        await h.WaitBackendStateAsync(ra.Domid, 6);
        fa.Reset();
        await h.Dom0.WriteAsync($"{fe}/state", "1");
        await h.ConnectAsync(fa);
        fa.PostRx();
        var again = Random(MacB, MacA, 500, rng);
        Send(fa, again);
        Assert.Equal(again, Receive(fb)!.Value.Frame);
        Assert.Equal(1, h.Port(ra.Domid).Stats.Failures);
    }

    [Fact]
    public async Task After_a_netback_restart_connected_frontends_are_sent_through_a_reconnect()
    {
        await using var h = await VifHarness.StartAsync();
        var (ra, ga) = await h.CreateGuestAsync("a", MacA);
        var (rb, gb) = await h.CreateGuestAsync("b", MacB);
        var fa = h.Frontend(ra, ga, split: true);
        var fb = h.Frontend(rb, gb, split: false);
        await h.ConnectAsync(fa);
        await h.ConnectAsync(fb);

        await h.StopNetbackAsync();
        Assert.Equal("4", await h.Dom0.ReadAsync($"{VifHarness.BackendPath(ra.Domid)}/state"));
        await h.StartNetbackAsync();

        // Backend back in InitWait; the frontends re-read, publish new rings and reconnect.
        foreach (var f in new[] { fa, fb })
        {
            await h.WaitBackendStateAsync(f.Domid, 2);
            Assert.False(h.Port(f.Domid).IsConnected);
            f.Reset();
            await h.ConnectAsync(f);
            f.PostRx();
        }
        var rng = new Random(3);
        for (var i = 0; i < 20; i++)
        {
            var frame = Random(MacB, MacA, 1000, rng);
            Send(fa, frame);
            Assert.Equal(frame, Receive(fb)!.Value.Frame);
        }
        Assert.Contains(h.Log, l => l.Contains("earlier netback"));
    }

    [Fact]
    public async Task The_rate_credit_limit_holds_frames_back_without_losing_them_and_changes_at_runtime()
    {
        await using var h = await VifHarness.StartAsync();
        var (ra, ga) = await h.CreateGuestAsync("a", MacA, rate: "2000,50000");
        var (rb, gb) = await h.CreateGuestAsync("b", MacB);
        var fa = h.Frontend(ra, ga, split: false);
        var fb = h.Frontend(rb, gb, split: false);
        await h.ConnectAsync(fa);
        await h.ConnectAsync(fb);
        fb.PostRx();
        Assert.Equal(new XenIo.Netback.Vif.VifRateLimit(2000, 50000), h.Port(ra.Domid).Rate);
        var rng = new Random(4);
        var frames = Enumerable.Range(0, 12).Select(_ => Random(MacB, MacA, 1000, rng)).ToList();
        foreach (var f in frames) Send(fa, f);
        foreach (var f in frames) Assert.Equal(f, Receive(fb)!.Value.Frame);
        Assert.True(h.Port(ra.Domid).Stats.CreditWaits > 0);

        await h.Dom0.WriteAsync($"{VifHarness.BackendPath(ra.Domid)}/rate", "1000000,1000");
        var deadline = DateTime.UtcNow + VifHarness.Limit;
        while (h.Port(ra.Domid).Rate != new XenIo.Netback.Vif.VifRateLimit(1000000, 1000) && DateTime.UtcNow < deadline) await Task.Delay(20);
        Assert.Equal(new XenIo.Netback.Vif.VifRateLimit(1000000, 1000), h.Port(ra.Domid).Rate);
    }

    [Fact]
    public async Task A_vif_leaves_its_bridge_with_its_backend_node_and_others_keep_forwarding()
    {
        await using var h = await VifHarness.StartAsync();
        var (ra, ga) = await h.CreateGuestAsync("a", MacA);
        var (rb, gb) = await h.CreateGuestAsync("b", MacB);
        var (rc, gc) = await h.CreateGuestAsync("c", MacC);
        var fa = h.Frontend(ra, ga, split: false);
        var fb = h.Frontend(rb, gb, split: false);
        var fc = h.Frontend(rc, gc, split: true);
        foreach (var f in new[] { fa, fb, fc })
        {
            await h.ConnectAsync(f);
            f.PostRx();
        }
        var port = h.Port(ra.Domid);
        Assert.Contains(port, h.Bridge.Ports);

        await h.Manager.DestroyAsync(ra);
        var deadline = DateTime.UtcNow + VifHarness.Limit;
        while (!h.Log.Contains($"vif vif{ra.Domid}.0 removed") && DateTime.UtcNow < deadline) await Task.Delay(10);
        Assert.DoesNotContain(port, h.Bridge.Ports);
        Assert.False(port.IsConnected);
        Assert.Contains(h.Log, l => l == $"vif vif{ra.Domid}.0 removed");

        var rng = new Random(8);
        var frame = Random(MacC, MacB, 700, rng);
        Send(fb, frame);
        Assert.Equal(frame, Receive(fc)!.Value.Frame);
    }

    [Fact]
    public async Task Frames_for_a_frontend_without_rx_buffers_wait_in_a_bounded_queue_then_arrive_in_order()
    {
        await using var h = await VifHarness.StartAsync();
        var (ra, ga) = await h.CreateGuestAsync("a", MacA);
        var (rb, gb) = await h.CreateGuestAsync("b", MacB);
        var fa = h.Frontend(ra, ga, split: false);
        var fb = h.Frontend(rb, gb, split: true);
        await h.ConnectAsync(fa);
        await h.ConnectAsync(fb);
        var rng = new Random(6);
        var frames = Enumerable.Range(0, 300).Select(_ => Random(MacB, MacA, rng.Next(60, 1000), rng)).ToList();
        foreach (var f in frames) Send(fa, f);
        var deadline = DateTime.UtcNow + VifHarness.Limit;
        while (fa.TxResponses < frames.Count && DateTime.UtcNow < deadline)
        {
            fa.WaitTx(20);
            fa.ReapTx();
        }
        Assert.Equal(frames.Count, fa.TxResponses);
        var port = h.Port(rb.Domid);
        Assert.Equal(128, port.RxPending);
        Assert.Equal(frames.Count - 128, port.Stats.RxQueueDrops);
        Assert.Equal(frames.Count - 128, port.Counters.Drops(XenIo.VSwitch.Core.DropReason.QueueFull));

        fb.PostRx(); // the frontend's notification drains the queue
        foreach (var f in frames.Take(128)) Assert.Equal(f, Receive(fb)!.Value.Frame);
        Assert.Null(Receive(fb, 200));
        Assert.Equal(0, port.RxPending);
    }

    [Fact]
    public async Task Multicast_control_delivers_only_groups_the_frontend_joined_with_mcast_extras()
    {
        await using var h = await VifHarness.StartAsync();
        var (ra, ga) = await h.CreateGuestAsync("a", MacA);
        var (rb, gb) = await h.CreateGuestAsync("b", MacB);
        var fa = h.Frontend(ra, ga, split: false);
        var fb = h.Frontend(rb, gb, split: false);
        await h.ConnectAsync(fa, fa.FrontendKeys(multicastControl: true));
        await h.ConnectAsync(fb);
        fa.PostRx();
        fb.PostRx();
        var rng = new Random(10);
        const string Group = "01:00:5e:00:00:fb";

        Send(fb, Random(Group, MacB, 100, rng));
        var broadcast = Random("ff:ff:ff:ff:ff:ff", MacB, 100, rng);
        Send(fb, broadcast);
        Assert.Equal(broadcast, Receive(fa)!.Value.Frame); // the group frame before it was filtered
        Assert.Equal(1, h.Port(ra.Domid).Stats.RxMulticastFiltered);

        // MCAST_ADD rides on a packet of its own, which is answered and not forwarded.
        var join = new NetifExtraInfo { Type = NetifExtraType.McastAdd };
        Span<byte> addr = join.McastAddr;
        Convert.FromHexString(Group.Replace(":", "")).CopyTo(addr);
        Send(fa, Random(MacB, MacA, 60, rng), gso: join);
        var deadline = DateTime.UtcNow + VifHarness.Limit;
        while (h.Port(ra.Domid).Filter.MulticastCount == 0 && DateTime.UtcNow < deadline) await Task.Delay(5);
        Assert.Equal(1, h.Port(ra.Domid).Filter.MulticastCount);
        var toGroup = Random(Group, MacB, 120, rng);
        Send(fb, toGroup);
        Assert.Equal(toGroup, Receive(fa)!.Value.Frame);
        Assert.Null(Receive(fb, 100)); // the join packet itself went nowhere
    }

    [Fact]
    public async Task A_frontend_that_keeps_its_rings_across_a_netback_restart_is_served_on_them_after_the_grace_period()
    {
        await using var h = await VifHarness.StartAsync();
        var (ra, ga) = await h.CreateGuestAsync("a", MacA);
        var (rb, gb) = await h.CreateGuestAsync("b", MacB);
        var fa = h.Frontend(ra, ga, split: true);
        var fb = h.Frontend(rb, gb, split: false);
        await h.ConnectAsync(fa);
        await h.ConnectAsync(fb);
        fa.PostRx();
        fb.PostRx();
        var rng = new Random(12);
        var before = Random(MacB, MacA, 300, rng);
        Send(fa, before);
        Assert.Equal(before, Receive(fb)!.Value.Frame);

        await h.StopNetbackAsync();
        await h.StartNetbackAsync();
        await h.WaitBackendStateAsync(ra.Domid, 2);
        // Neither frontend publishes anything new: same rings, same ports, still Connected.
        fa.ReopenEvents();
        fb.ReopenEvents();
        await h.WaitBackendStateAsync(ra.Domid, 4);
        await h.WaitBackendStateAsync(rb.Domid, 4);
        for (var i = 0; i < 10; i++)
        {
            var frame = Random(i % 2 == 0 ? MacB : MacA, i % 2 == 0 ? MacA : MacB, 400, rng);
            Send(i % 2 == 0 ? fa : fb, frame);
            Assert.Equal(frame, Receive(i % 2 == 0 ? fb : fa)!.Value.Frame);
        }
    }
}
