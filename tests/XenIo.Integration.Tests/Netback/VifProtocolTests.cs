using XenIo.Hypervisor.Abi;
using XenIo.Net.Frames;
using XenIo.Netback.Vif;
using XenIo.Netback.Xenbus;
using Xunit;
using static XenIo.Integration.Tests.Netback.VifFrames;

namespace XenIo.Integration.Tests.Netback;

/// <summary>The vif backend's pure parts: xenbus state machine, frontend keys, filters, offload mapping, credit, backend keys.</summary>
public sealed class VifProtocolTests
{
    private static Dictionary<string, string> Keys(params (string K, string V)[] extra)
    {
        var keys = new Dictionary<string, string>
        {
            ["tx-ring-ref"] = "10", ["rx-ring-ref"] = "11", ["event-channel"] = "5", ["request-rx-copy"] = "1",
            ["feature-sg"] = "1", ["feature-gso-tcpv4"] = "1", ["feature-rx-notify"] = "1",
        };
        foreach (var (k, v) in extra)
        {
            if (v is null) keys.Remove(k);
            else keys[k] = v;
        }
        return keys;
    }

    [Fact]
    public void Frontend_keys_give_queues_ports_and_features()
    {
        Assert.True(VifFrontendKeys.TryParse(Keys(), 4, out var setup, out _));
        Assert.Equal([new VifQueueRings(0, 10, 11, 5, 5)], setup.Queues);
        Assert.True(setup.Features.Sg && setup.Features.GsoTcpV4 && !setup.Features.GsoTcpV6 && setup.Features.CsumOffload && setup.Features.RxNotify);

        Assert.True(VifFrontendKeys.TryParse(Keys(("event-channel", null!), ("event-channel-tx", "7"), ("event-channel-rx", "8")), 4, out setup, out _));
        Assert.True(setup.Queues[0].SplitEventChannels);

        var multi = Keys(("multi-queue-num-queues", "2"), ("tx-ring-ref", null!), ("rx-ring-ref", null!), ("event-channel", null!),
            ("queue-0/tx-ring-ref", "20"), ("queue-0/rx-ring-ref", "21"), ("queue-0/event-channel", "3"),
            ("queue-1/tx-ring-ref", "22"), ("queue-1/rx-ring-ref", "23"), ("queue-1/event-channel-tx", "4"), ("queue-1/event-channel-rx", "6"));
        Assert.True(VifFrontendKeys.TryParse(multi, 4, out setup, out var error), error);
        Assert.Equal([new VifQueueRings(0, 20, 21, 3, 3), new VifQueueRings(1, 22, 23, 4, 6)], setup.Queues);
    }

    [Theory]
    [InlineData("request-rx-copy", "0", "rx-copy")]
    [InlineData("multi-queue-num-queues", "0", "multi-queue-num-queues")]
    [InlineData("multi-queue-num-queues", "5", "multi-queue-num-queues")]
    [InlineData("multi-queue-num-queues", "-1", "multi-queue-num-queues")]
    [InlineData("tx-ring-ref", "ten", "tx-ring-ref")]
    [InlineData("tx-ring-ref", "99999999999", "tx-ring-ref")]
    [InlineData("rx-ring-ref", "10", "used twice")]
    [InlineData("event-channel", "0", "event channel 0")]
    [InlineData("event-channel", " 5", "event-channel")]
    public void Bad_frontend_keys_are_refused_with_a_reason(string key, string value, string reason)
    {
        Assert.False(VifFrontendKeys.TryParse(Keys((key, value)), 4, out _, out var error));
        Assert.Contains(reason, error);
    }

    [Fact]
    public void The_backend_machine_runs_linux_netbacks_handshake_and_teardown_idempotently()
    {
        var m = new VifBackendMachine(4);
        var start = m.Start();
        Assert.Contains(new VifWriteKey("feature-rx-copy", "1"), start);
        Assert.Contains(new VifWriteKey("feature-split-event-channels", "1"), start);
        Assert.Contains(new VifWriteKey("multi-queue-max-queues", "4"), start);
        Assert.Equal(new VifSwitchState(XenbusState.InitWait), start[^1]);
        Assert.Empty(m.Start());

        Assert.Empty(m.OnFrontendChanged(XenbusState.Initialising, Keys()));
        var connect = m.OnFrontendChanged(XenbusState.Connected, Keys());
        Assert.IsType<VifConnect>(Assert.Single(connect));
        Assert.Empty(m.OnFrontendChanged(XenbusState.Connected, Keys())); // a second watch event
        Assert.Equal([new VifSwitchState(XenbusState.Connected)], m.OnConnected());

        var broken = m.OnRingBroken("tx ring: RequestProducerOverflow");
        Assert.IsType<VifReportError>(broken[0]);
        Assert.Equal([new VifDisconnect(), new VifSwitchState(XenbusState.Closing)], broken.Skip(1));
        Assert.Empty(m.OnRingBroken("again"));
        Assert.Empty(m.OnFrontendChanged(XenbusState.Connected, Keys())); // no reconnect from Closing

        Assert.Equal([new VifSwitchState(XenbusState.Closed)], m.OnFrontendChanged(XenbusState.Closed, Keys()));
        Assert.Empty(m.OnFrontendChanged(XenbusState.Closed, Keys()));
        Assert.Equal([new VifSwitchState(XenbusState.InitWait)], m.OnFrontendChanged(XenbusState.Initialising, Keys()));

        // A frontend that restarts while connected is disconnected and offered the handshake again.
        m.OnFrontendChanged(XenbusState.Connected, Keys());
        m.OnConnected();
        Assert.Equal([new VifDisconnect(), new VifSwitchState(XenbusState.InitWait)], m.OnFrontendChanged(XenbusState.Initialising, Keys()));

        // Bad keys close the device with one error.
        var bad = m.OnFrontendChanged(XenbusState.Connected, Keys(("request-rx-copy", null!)));
        Assert.IsType<VifReportError>(bad[0]);
        Assert.Equal(new VifSwitchState(XenbusState.Closing), bad[^1]);
        Assert.Equal([new VifSwitchState(XenbusState.Closing)], m.Detach() is { Count: 0 } ? [new VifSwitchState(XenbusState.Closing)] : m.Detach());
    }

    [Fact]
    public void Anti_spoofing_checks_source_mac_ipv4_and_arp()
    {
        var f = new VifFilter();
        var rng = new Random(1);
        f.Configure(Mac("00:16:3e:00:00:0a"), [0xC6120001]); // 198.18.0.1
        Assert.True(f.AllowsTx(Random("ff:ff:ff:ff:ff:ff", "00:16:3e:00:00:0a", 60, rng)));
        Assert.False(f.AllowsTx(Random("ff:ff:ff:ff:ff:ff", "00:16:3e:00:00:0b", 60, rng)));
        Assert.True(f.AllowsTx(Udp("00:16:3e:00:00:0b", "00:16:3e:00:00:0a", "198.18.0.1", "198.18.0.2", 5, 10, rng)));
        Assert.False(f.AllowsTx(Udp("00:16:3e:00:00:0b", "00:16:3e:00:00:0a", "198.18.0.3", "198.18.0.2", 5, 10, rng)));
        var dhcp = Udp("ff:ff:ff:ff:ff:ff", "00:16:3e:00:00:0a", "0.0.0.0", "255.255.255.255", 68, 10, rng);
        dhcp[14 + 20 + 3] = 67;
        Assert.True(f.AllowsTx(dhcp));
        var arp = new byte[28];
        arp[14] = 198; arp[15] = 18; arp[16] = 0; arp[17] = 9;
        Assert.False(f.AllowsTx(Ethernet("ff:ff:ff:ff:ff:ff", "00:16:3e:00:00:0a", 0x0806, arp)));
        arp[17] = 1;
        Assert.True(f.AllowsTx(Ethernet("ff:ff:ff:ff:ff:ff", "00:16:3e:00:00:0a", 0x0806, arp)));
        Assert.False(f.AllowsTx(new byte[10]));
    }

    [Fact]
    public void Anti_spoofing_is_not_bypassed_by_stacked_or_service_vlan_tags()
    {
        // The switch pops one 802.1Q tag (a priority tag, VID 0, is untagged traffic on an access port),
        // and Linux receivers strip a priority tag of either TPID: whatever sits behind the tags reaches
        // them as plain IPv4 or ARP, so it must be checked or refused.
        var f = new VifFilter();
        var rng = new Random(2);
        f.Configure(Mac("00:16:3e:00:00:0a"), [0xC6120001]); // 198.18.0.1
        var good = Udp("00:16:3e:00:00:0b", "00:16:3e:00:00:0a", "198.18.0.1", "198.18.0.2", 5, 10, rng);
        var spoofed = Udp("00:16:3e:00:00:0b", "00:16:3e:00:00:0a", "198.18.0.3", "198.18.0.2", 5, 10, rng);
        var arp = new byte[28];
        arp[14] = 198; arp[15] = 18; arp[16] = 0; arp[17] = 9;
        var spoofedArp = Ethernet("ff:ff:ff:ff:ff:ff", "00:16:3e:00:00:0a", 0x0806, arp);

        Assert.True(f.AllowsTx(Tag(good, 0x8100)));
        Assert.False(f.AllowsTx(Tag(spoofed, 0x8100)));
        Assert.True(f.AllowsTx(Tag(good, 0x88A8)));
        Assert.False(f.AllowsTx(Tag(spoofed, 0x88A8)));
        Assert.False(f.AllowsTx(Tag(spoofedArp, 0x88A8)));
        Assert.False(f.AllowsTx(Tag(Tag(spoofedArp, 0x8100), 0x8100)));
        Assert.False(f.AllowsTx(Tag(Tag(spoofed, 0x8100), 0x8100)));
        Assert.False(f.AllowsTx(Tag(Tag(spoofed, 0x8100), 0x88A8)));
        // Stacked tags cannot be address-checked at all, so even a right address is refused.
        Assert.False(f.AllowsTx(Tag(Tag(good, 0x8100), 0x8100)));
        Assert.False(f.AllowsTx(Tag(good, 0x8100)[..17]));

        // Without ip= only the MAC is checked, tags or not.
        f.Configure(Mac("00:16:3e:00:00:0a"), []);
        Assert.True(f.AllowsTx(Tag(Tag(spoofed, 0x8100), 0x8100)));
    }

    /// <summary>The frame with a VID 0 (priority) tag of <paramref name="tpid"/> pushed after the MACs.</summary>
    private static byte[] Tag(byte[] frame, ushort tpid)
    {
        var tagged = new byte[frame.Length + 4];
        frame.AsSpan(0, 12).CopyTo(tagged);
        tagged[12] = (byte)(tpid >> 8);
        tagged[13] = (byte)tpid;
        frame.AsSpan(12).CopyTo(tagged.AsSpan(16));
        return tagged;
    }

    [Fact]
    public void Multicast_control_filters_groups_the_frontend_did_not_join()
    {
        var f = new VifFilter { MulticastControl = true };
        var rng = new Random(2);
        var group = Random("01:00:5e:00:00:fb", "00:16:3e:00:00:0b", 60, rng);
        Assert.False(f.AllowsRx(group));
        Assert.True(f.AllowsRx(Random("ff:ff:ff:ff:ff:ff", "00:16:3e:00:00:0b", 60, rng)));
        Assert.True(f.AllowsRx(Random("00:16:3e:00:00:0a", "00:16:3e:00:00:0b", 60, rng)));
        Assert.False(f.AddMulticast(Mac("00:16:3e:00:00:0a"))); // not a group address
        Assert.True(f.AddMulticast(Mac("01:00:5e:00:00:fb")));
        Assert.True(f.AllowsRx(group));
        Assert.True(f.RemoveMulticast(Mac("01:00:5e:00:00:fb")));
        Assert.False(f.AllowsRx(group));
        for (var i = 0; i < VifFilter.MaxMulticast; i++) Assert.True(f.AddMulticast(0x0100_5e00_0000UL + (ulong)i));
        Assert.False(f.AddMulticast(0x0100_5e00_1000UL));
    }

    [Fact]
    public void Offload_flags_map_to_frame_metadata_and_back()
    {
        var rng = new Random(3);
        var v4 = Tcp("00:16:3e:00:00:0b", "00:16:3e:00:00:0a", false, "198.18.0.1", "198.18.0.2", 3000, rng);
        var m = FrameMetadata.Plain(v4.Length);
        Assert.True(VifOffload.TrySetup(v4, NetTxFlags.CsumBlank, true, GsoExtra(false, 1448), ref m));
        Assert.Equal((ChecksumState.Partial, (ushort)34, (ushort)16, GsoType.TcpV4, (ushort)1448, (ushort)54),
            (m.Checksum, m.CsumStart, m.CsumOffset, m.Gso, m.GsoSize, m.HeaderLength));
        Assert.Equal(NetRxFlags.CsumBlank | NetRxFlags.DataValidated, VifOffload.RxFlags(m));
        var extra = VifOffload.RxGsoExtra(m);
        Assert.Equal((NetifExtraType.Gso, NetifGsoType.TcpV4, (ushort)1448), (extra.Type, extra.GsoType, extra.GsoSize));

        var udp = Udp("00:16:3e:00:00:0b", "00:16:3e:00:00:0a", "198.18.0.1", "198.18.0.2", 5, 10, rng);
        m = FrameMetadata.Plain(udp.Length);
        Assert.True(VifOffload.TrySetup(udp, NetTxFlags.CsumBlank, false, default, ref m));
        Assert.Equal(6, m.CsumOffset);
        m = FrameMetadata.Plain(udp.Length);
        Assert.False(VifOffload.TrySetup(udp, NetTxFlags.None, true, GsoExtra(false, 1000), ref m)); // GSO of UDP
        m = FrameMetadata.Plain(v4.Length);
        Assert.False(VifOffload.TrySetup(v4, NetTxFlags.CsumBlank, true, GsoExtra(true, 1000), ref m)); // v6 GSO of a v4 frame
        var junk = Random("00:16:3e:00:00:0b", "00:16:3e:00:00:0a", 100, rng);
        m = FrameMetadata.Plain(junk.Length);
        Assert.False(VifOffload.TrySetup(junk, NetTxFlags.CsumBlank, false, default, ref m));
        m = FrameMetadata.Plain(junk.Length);
        Assert.True(VifOffload.TrySetup(junk, NetTxFlags.DataValidated, false, default, ref m));
        Assert.Equal(ChecksumState.Validated, m.Checksum);
        Assert.Equal(NetRxFlags.DataValidated, VifOffload.RxFlags(m));
    }

    [Theory]
    [InlineData(1, false)]
    [InlineData(XenIo.Net.Offload.TcpSegmenter.MinGsoSize - 1, false)]
    [InlineData(XenIo.Net.Offload.TcpSegmenter.MinGsoSize, true)]
    [InlineData(1448, true)]
    public void A_gso_size_below_the_switchs_floor_is_refused_at_the_vif(ushort size, bool accepted)
    {
        // The switch refuses to cut such a frame itself, but a port that accepts GSO (another vif, a tap)
        // would be handed the size as is: 65,535 bytes marked 1 is 65,535 segments for whoever cuts it.
        var rng = new Random(4);
        foreach (var v6 in new[] { false, true })
        {
            var frame = Tcp("00:16:3e:00:00:0b", "00:16:3e:00:00:0a", v6, v6 ? "2001:db8::1" : "198.18.0.1", v6 ? "2001:db8::2" : "198.18.0.2", 60000, rng);
            var m = FrameMetadata.Plain(frame.Length);
            Assert.Equal(accepted, VifOffload.TrySetup(frame, NetTxFlags.CsumBlank, true, GsoExtra(v6, size), ref m));
            if (accepted) Assert.Equal(size, m.GsoSize);
        }
    }

    [Fact]
    public void Credit_lets_a_packet_overdraw_once_then_waits_for_the_refill()
    {
        var c = new VifCredit();
        Assert.True(c.TryTake(1_000_000));
        c.SetLimit(new VifRateLimit(1000, 10_000_000));
        Assert.True(c.TryTake(600));
        Assert.True(c.TryTake(600));
        Assert.False(c.TryTake(1));
        Assert.InRange(c.MillisecondsUntilRefill, 1, 1000);
        c.SetLimit(null);
        Assert.True(c.TryTake(1_000_000));
    }

    [Fact]
    public void Backend_keys_from_the_toolstack_are_parsed_strictly()
    {
        var keys = new Dictionary<string, string>
        {
            ["mac"] = "00:16:3e:01:02:03", ["ip"] = "198.18.0.1/24 198.18.0.5,fd00::1", ["rate"] = "1250000,50000", ["mtu"] = "9000",
            ["vlan"] = "10", ["bridge"] = "br1", ["vifname"] = "web-out",
        };
        var errors = new List<string>();
        var s = VifSettings.Parse(k => keys.GetValueOrDefault(k), errors);
        Assert.Empty(errors);
        Assert.Equal((0x00163e010203UL, new VifRateLimit(1250000, 50000), 9000, (ushort?)10, "br1", "web-out"),
            (s.Mac, s.Rate, s.Mtu, s.Vlan, s.Bridge, s.Vifname));
        Assert.Equal([0xC6120001u, 0xC6120005u], s.Ipv4);
        Assert.True(s.SameAs(VifSettings.Parse(k => keys.GetValueOrDefault(k), [])));
        keys = new Dictionary<string, string> { ["mac"] = "zz", ["rate"] = "fast", ["mtu"] = "10", ["vlan"] = "4095", ["ip"] = "not-an-ip" };
        s = VifSettings.Parse(k => keys.GetValueOrDefault(k), errors);
        Assert.Equal(5, errors.Count);
        Assert.Equal((0UL, null, 1500, (ushort?)null, "xenbr0"), (s.Mac, s.Rate, s.Mtu, s.Vlan, s.Bridge));
    }
}
