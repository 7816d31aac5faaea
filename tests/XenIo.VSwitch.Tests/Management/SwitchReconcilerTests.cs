using System.Net;
using System.Net.Sockets;
using XenIo.Net.Tap;
using XenIo.Tests;
using XenIo.VSwitch.Core;
using XenIo.VSwitch.Management;
using XenIo.VSwitch.Ports;
using XenIo.VSwitch.Tests.Core;
using XenIo.VSwitch.Tests.Ports;
using Xunit;

namespace XenIo.VSwitch.Tests.Management;

public sealed class SwitchReconcilerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("xenio-recon-").FullName;
    private readonly EpollLoop _loop = new("recon-test");
    private readonly SwitchReconciler _reconciler;

    public SwitchReconcilerTests() => _reconciler = new SwitchReconciler(new PortFactory(_loop));

    public void Dispose()
    {
        _reconciler.Dispose();
        _loop.Dispose();
        Directory.Delete(_dir, true);
    }

    private PortConfig Stream(string name) =>
        new(name, "stream") { Options = new SortedDictionary<string, string> { ["listen"] = $"unix:{_dir}/{name}.sock" } };

    private static SwitchConfig Config(params BridgeConfig[] bridges) =>
        new(bridges.ToDictionary(b => b.Name, b => b));

    private static BridgeConfig Bridge(string name, params PortConfig[] ports) =>
        new(name) { Ports = ports.ToDictionary(p => p.Name, p => p) };

    [Fact]
    public void AddsChangesInPlaceRecreatesAndRemoves()
    {
        Assert.Empty(_reconciler.Apply(Config(Bridge("br0", Stream("s1"), Stream("s2")))));
        var br0 = _reconciler.FindBridge("br0")!;
        var s1 = br0.FindPort("s1")!;
        Assert.IsType<StreamPort>(s1);
        Assert.Equal(2, br0.Ports.Count);

        // VLAN, admin, MTU and rate change in place: the same port object stays.
        var changed = Stream("s1") with { VlanMode = VlanMode.Access, Tag = 30, AdminUp = false, Mtu = 9000, Ingress = new RateConfig(5000, 0, 0, 0) };
        Assert.Empty(_reconciler.Apply(Config(Bridge("br0", changed, Stream("s2")))));
        Assert.Same(s1, br0.FindPort("s1"));
        Assert.Equal(VlanMode.Access, s1.Vlan.Mode);
        Assert.Equal(30, s1.Vlan.Tag);
        Assert.False(s1.AdminUp);
        Assert.Equal(9000, s1.Mtu);
        Assert.Equal(5000, s1.IngressLimit!.Bytes!.Size);

        // New options re-create the port.
        var moved = changed with { Options = new SortedDictionary<string, string> { ["listen"] = $"unix:{_dir}/other.sock" } };
        Assert.Empty(_reconciler.Apply(Config(Bridge("br0", moved, Stream("s2")))));
        Assert.NotSame(s1, br0.FindPort("s1"));
        Assert.Null(s1.Bridge);
        Assert.Equal(30, br0.FindPort("s1")!.Vlan.Tag);

        // Removing a port and then the bridge.
        Assert.Empty(_reconciler.Apply(Config(Bridge("br0", Stream("s2")))));
        Assert.Null(br0.FindPort("s1"));
        Assert.Empty(_reconciler.Apply(SwitchConfig.Empty));
        Assert.Null(_reconciler.FindBridge("br0"));
        Assert.Empty(br0.Ports);
    }

    [Fact]
    public void BadPortOptionsAreReportedAndTheRestIsApplied()
    {
        var bad = new PortConfig("v1", "vxlan") { Options = new SortedDictionary<string, string> { ["local"] = "nowhere", ["vni"] = "1", ["remotes"] = "127.0.0.1" } };
        var unknown = new PortConfig("s9", "stream") { Options = new SortedDictionary<string, string> { ["listen"] = $"unix:{_dir}/s9.sock", ["colour"] = "red" } };
        var errors = _reconciler.Apply(Config(Bridge("br0", bad, unknown, Stream("s1"))));
        Assert.Equal(2, errors.Count);
        Assert.Contains(errors, e => e.Contains("br0/v1") && e.Contains("local='nowhere'"));
        Assert.Contains(errors, e => e.Contains("br0/s9") && e.Contains("'colour'"));
        Assert.NotNull(_reconciler.FindBridge("br0")!.FindPort("s1"));
    }

    [Fact]
    public void WhatAPortReportsReachesTheLogOncePerEvent()
    {
        var lines = new List<string>();
        using var reconciler = new SwitchReconciler(new PortFactory(_loop, line => { lock (lines) lines.Add(line); }));
        var vxlan = new PortConfig("vx0", "vxlan")
        {
            Options = new SortedDictionary<string, string> { ["local"] = "127.0.0.1:0", ["vni"] = "7", ["remotes"] = "127.0.0.2" },
        };
        Assert.Empty(reconciler.Apply(Config(Bridge("br0", vxlan))));
        var port = Assert.IsType<VxlanPort>(reconciler.FindBridge("br0")!.FindPort("vx0"));
        using var stranger = VxlanPortTests.Udp("127.0.0.3");
        for (var i = 0; i < 3; i++) stranger.SendTo(VxlanPortTests.Packet(7, Frame.Build(Frame.Broadcast, Frame.Mac(1))), port.LocalEndPoint);

        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (port.Counters.Drops(DropReason.UnknownPeer) < 3 && DateTime.UtcNow < deadline) Thread.Sleep(10);
        Assert.Equal(3, port.Counters.Drops(DropReason.UnknownPeer));
        lock (lines) Assert.Single(lines, l => l.Contains("vxlan port vx0", StringComparison.Ordinal) && l.Contains("unconfigured remote", StringComparison.Ordinal));
    }

    [Fact]
    public void APortWhoseSettingsCannotBeAppliedIsNotAttachedAndItsErrorStays()
    {
        // Tag 0 passes no mapping any more, but a config that reaches the reconciler with one must not attach
        // the port as an all-VLAN trunk without its admin state and limits (VLAN isolation fails open).
        var bad = Stream("s1") with { VlanMode = VlanMode.Access, Tag = 0, AdminUp = false, Ingress = new RateConfig(1000, 0, 0, 0) };
        var config = Config(Bridge("br0", bad, Stream("s2")));
        var br0 = (Func<Bridge>)(() => _reconciler.FindBridge("br0")!);
        for (var apply = 0; apply < 2; apply++)
        {
            var errors = _reconciler.Apply(config);
            var error = Assert.Single(errors);
            Assert.Contains("br0/s1", error);
            Assert.Contains("VLAN tag 0", error);
            Assert.Contains("1-4094", error);
            Assert.Equal(errors, _reconciler.Errors);
            Assert.Null(br0().FindPort("s1"));
            Assert.NotNull(br0().FindPort("s2"));
        }

        // Fixed, the port comes up with every setting; a live port given a bad VLAN leaves its bridge.
        Assert.Empty(_reconciler.Apply(Config(Bridge("br0", bad with { Tag = 10 }, Stream("s2")))));
        var s1 = br0().FindPort("s1")!;
        Assert.Equal((VlanMode.Access, (ushort)10, false, 1000L), (s1.Vlan.Mode, s1.Vlan.Tag, s1.AdminUp, s1.IngressLimit!.Bytes!.Size));
        Assert.Contains(_reconciler.Apply(config), e => e.Contains("br0/s1"));
        Assert.Null(br0().FindPort("s1"));
        Assert.Null(s1.Bridge);
        Assert.Contains(_reconciler.Apply(config), e => e.Contains("br0/s1"));
    }

    private static PortConfig Vxlan(string name, int localPort) => new(name, "vxlan")
    {
        Options = new SortedDictionary<string, string> { ["local"] = $"127.0.0.1:{localPort}", ["vni"] = "7", ["remotes"] = "127.0.0.2" },
    };

    /// <summary>A UDP port on 127.0.0.1 and the socket holding it (the test's stand-in for a device another owner holds).</summary>
    private static Socket HoldUdpPort(out int port)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        port = ((IPEndPoint)socket.LocalEndPoint!).Port;
        return socket;
    }

    [Fact]
    public void APortMovingBetweenBridgesIsReleasedByTheOldOneBeforeTheNewOneOpensIt()
    {
        // The port's own socket is what the move needs released (as a TAP would be): br0 comes first in
        // the config, so adding before removing found it busy and left the port on no bridge.
        HoldUdpPort(out var udp).Dispose();
        Assert.Empty(_reconciler.Apply(Config(Bridge("br0"), Bridge("br1", Vxlan("v1", udp)))));
        var old = _reconciler.FindBridge("br1")!.FindPort("v1");
        Assert.NotNull(old);

        Assert.Empty(_reconciler.Apply(Config(Bridge("br0", Vxlan("v1", udp)), Bridge("br1"))));
        Assert.IsType<VxlanPort>(_reconciler.FindBridge("br0")!.FindPort("v1"));
        Assert.Null(_reconciler.FindBridge("br1")!.FindPort("v1"));
        Assert.Null(old.Bridge);
    }

    [Fact]
    public void AFailedPortIsRetriedUntilItComesUpAndItsErrorIsLoggedOnce()
    {
        var log = new List<string>();
        using var reconciler = new SwitchReconciler(new PortFactory(_loop), log.Add);
        var holder = HoldUdpPort(out var udp);
        var config = Config(Bridge("br0", Vxlan("v1", udp), Stream("s1")));
        Assert.Contains(reconciler.Apply(config), e => e.Contains("br0/v1"));
        Assert.Null(reconciler.FindBridge("br0")!.FindPort("v1"));

        // Retrying while the socket is still held: the same error, not said again.
        for (var tick = 0; tick < 3; tick++) Assert.Contains(reconciler.RetryFailed(), e => e.Contains("br0/v1"));
        Assert.Single(log, l => l.Contains("br0/v1"));
        var s1 = reconciler.FindBridge("br0")!.FindPort("s1");

        holder.Dispose();
        Assert.Empty(reconciler.RetryFailed());
        Assert.IsType<VxlanPort>(reconciler.FindBridge("br0")!.FindPort("v1"));
        Assert.Empty(reconciler.Errors);
        Assert.Same(s1, reconciler.FindBridge("br0")!.FindPort("s1"));
        Assert.Contains(log, l => l.Contains("br0/v1 (vxlan) added"));

        // Nothing failed: a retry does nothing.
        var before = log.Count;
        Assert.Empty(reconciler.RetryFailed());
        Assert.Equal(before, log.Count);
    }

    [Fact]
    public void VxlanLearningOptionsAreAppliedAndCheckedLikeLinuxs()
    {
        static PortConfig Vxlan(string name, string ageing, string maxaddress) => new(name, "vxlan")
        {
            Options = new SortedDictionary<string, string>
            {
                ["local"] = "127.0.0.1:0", ["vni"] = "7", ["remotes"] = "127.0.0.2", ["ageing"] = ageing, ["maxaddress"] = maxaddress,
            },
        };
        var errors = _reconciler.Apply(Config(Bridge("br0", Vxlan("v1", "60", "100"), Vxlan("v2", "0", "100"), Vxlan("v3", "60", "lots"))));
        var v1 = Assert.IsType<VxlanPort>(_reconciler.FindBridge("br0")!.FindPort("v1"));
        Assert.Equal((TimeSpan.FromSeconds(60), 100), (v1.Options.LearningAging, v1.Learned.Limit));
        Assert.Equal(2, errors.Count);
        Assert.Contains(errors, e => e.Contains("br0/v2") && e.Contains("ageing='0'"));
        Assert.Contains(errors, e => e.Contains("br0/v3") && e.Contains("maxaddress='lots'"));
    }

    [Fact]
    public void An_ipv6_vxlan_port_leaves_room_for_its_longer_outer_headers_unless_its_mtu_is_configured()
    {
        // Both bind [::1]:4789, one after the other.
        var vxlan = new PortConfig("v6", "vxlan") { Options = new SortedDictionary<string, string> { ["local"] = "::1", ["vni"] = "7", ["remotes"] = "::1" } };
        var bridge = new BridgeConfig("br0") { Mtu = 9000 };
        Assert.Empty(_reconciler.Apply(Config(bridge with { Ports = new Dictionary<string, PortConfig> { ["v6"] = vxlan with { Mtu = 8950 } } })));
        Assert.Equal(8950, _reconciler.FindBridge("br0")!.FindPort("v6")!.Mtu);
        Assert.Empty(_reconciler.Apply(SwitchConfig.Empty));
        Assert.Empty(_reconciler.Apply(Config(bridge with { Ports = new Dictionary<string, PortConfig> { ["v6"] = vxlan } })));
        Assert.Equal(1430, _reconciler.FindBridge("br0")!.FindPort("v6")!.Mtu);
    }

    [SkippableTheory]
    [InlineData("tap", "xvs-mtu-t")]
    [InlineData("internal", "xvs-mtu-i")]
    public void A_tap_or_internal_ports_mtu_reaches_its_interface_when_created_and_when_changed_in_place(string kind, string name)
    {
        Requires.Root("creates TAP interfaces");
        string Kernel() => File.ReadAllText($"/sys/class/net/{name}/mtu").Trim();
        var port = new PortConfig(name, kind) { Mtu = 9000 };
        Assert.Empty(_reconciler.Apply(Config(Bridge("br0", port))));
        var live = _reconciler.FindBridge("br0")!.FindPort(name)!;
        Assert.Equal(9000, live.Mtu);
        Assert.Equal("9000", Kernel());

        Assert.Empty(_reconciler.Apply(Config(Bridge("br0", port with { Mtu = 4000 }))));
        Assert.Same(live, _reconciler.FindBridge("br0")!.FindPort(name));
        Assert.Equal("4000", Kernel());

        // No MTU of its own: the bridge's.
        Assert.Empty(_reconciler.Apply(Config(Bridge("br0", port with { Mtu = null }) with { Mtu = 2000 })));
        Assert.Same(live, _reconciler.FindBridge("br0")!.FindPort(name));
        Assert.Equal("2000", Kernel());

        // Moved to another namespace, the interface cannot be reached by name: the change is that port's
        // error, and the port stays as it was (detaching it would close the TAP, destroying the interface).
        using var ns = new Netns($"xvs-mtu-{kind[0]}");
        Netns.Run("ip", "link", "set", name, "netns", ns.Name);
        var error = Assert.Single(_reconciler.Apply(Config(Bridge("br0", port with { Mtu = 3000 }) with { Mtu = 2000 })));
        Assert.Contains($"port br0/{name}", error);
        Assert.Contains("namespace", error);
        Assert.Same(live, _reconciler.FindBridge("br0")!.FindPort(name));
        Assert.Equal(2000, live.Mtu);
        Assert.Contains("mtu 2000", ns.Exec("ip", "link", "show", name));
    }

    [Fact]
    public void Vxlan_endpoints_keep_their_port_over_ipv6_and_addresses_without_one_get_4789()
    {
        static PortConfig Vxlan(string local, string remotes) => new("v6", "vxlan")
        {
            Options = new SortedDictionary<string, string> { ["local"] = local, ["vni"] = "7", ["remotes"] = remotes },
        };
        VxlanPort Live() => Assert.IsType<VxlanPort>(_reconciler.FindBridge("br0")!.FindPort("v6"));

        // A bracketed IPv6 address with a port passed as an address: the port was dropped for 4789.
        using var remote = VxlanPortTests.Udp6();
        var remotePort = ((IPEndPoint)remote.LocalEndPoint!).Port;
        Assert.Empty(_reconciler.Apply(Config(Bridge("br0", Vxlan("[::1]:4790", $"[::1]:{remotePort}")))));
        Assert.Equal(new IPEndPoint(IPAddress.IPv6Loopback, 4790), Live().LocalEndPoint);
        var local = new QueuePort("local");
        _reconciler.FindBridge("br0")!.AddPort(local);
        var frame = Frame.Build(Frame.Broadcast, Frame.Mac(1));
        local.Inject(frame);
        var buffer = new byte[2000];
        EndPoint from = new IPEndPoint(IPAddress.IPv6Any, 0);
        var n = remote.ReceiveFrom(buffer, ref from);
        Assert.Equal(VxlanPortTests.Packet(7, frame), buffer[..n]);
        Assert.Equal(4790, ((IPEndPoint)from).Port);

        // Without a port (bare IPv6 with or without brackets, or :0 as before): VXLAN's 4789.
        foreach (var bare in new[] { "::1", "[::1]", "[::1]:0" })
        {
            Assert.Empty(_reconciler.Apply(SwitchConfig.Empty));
            Assert.Empty(_reconciler.Apply(Config(Bridge("br0", Vxlan(bare, "::1")))));
            Assert.Equal(new IPEndPoint(IPAddress.IPv6Loopback, VxlanHeader.DefaultPort), Live().LocalEndPoint);
            Assert.Equal(VxlanHeader.DefaultPort, Live().Options.Remotes[0].EndPoint.Port);
        }
    }

    [Fact]
    public void PatchPortsJoinTwoBridgesAndLeaveTogether()
    {
        var a = new PortConfig("pa", "patch") { Options = new SortedDictionary<string, string> { ["peer"] = "br1/pb" } };
        var b = new PortConfig("pb", "patch") { Options = new SortedDictionary<string, string> { ["peer"] = "br0/pa" } };
        Assert.Empty(_reconciler.Apply(Config(Bridge("br0", a), Bridge("br1", b))));
        var pa = Assert.IsType<PatchPort>(_reconciler.FindBridge("br0")!.FindPort("pa"));
        Assert.Same(_reconciler.FindBridge("br1")!.FindPort("pb"), pa.Peer);

        // A one-sided patch is an error, and deleting one end takes the other down.
        var errors = _reconciler.Apply(Config(Bridge("br0"), Bridge("br1", b)));
        Assert.Null(_reconciler.FindBridge("br1")!.FindPort("pb"));
        Assert.Contains(errors, e => e.Contains("br1/pb") && e.Contains("not a configured patch port"));
    }

    private static PortConfig Patch(string name, string peer) =>
        new(name, "patch") { Options = new SortedDictionary<string, string> { ["peer"] = peer } };

    [Fact]
    public void APatchPortWhosePeerIsItselfIsRefusedAndNothingIsLeft()
    {
        var config = Config(Bridge("br1", Patch("p0", "br1/p0"), Stream("s1")));
        for (var apply = 0; apply < 2; apply++)
        {
            var error = Assert.Single(_reconciler.Apply(config));
            Assert.Contains("br1/p0", error);
            Assert.Contains("peer='br1/p0'", error);
            Assert.Contains("itself", error);
            Assert.Equal(["s1"], _reconciler.FindBridge("br1")!.Ports.Select(p => p.Name));
        }
    }

    [Fact]
    public void APatchPairThatCannotBeCompletedLeavesNeitherEnd()
    {
        // br0 already has a port named pa that the configuration does not own: built from br1's side, the
        // pair's first end (br1/pb) goes in and the second cannot.
        Assert.Empty(_reconciler.Apply(Config(Bridge("br0"), Bridge("br1"))));
        var squatter = new Tests.Core.RecordingPort("pa");
        _reconciler.FindBridge("br0")!.AddPort(squatter);
        var config = Config(Bridge("br0", Patch("pa", "br1/pb")), Bridge("br1", Patch("pb", "br0/pa")));
        for (var apply = 0; apply < 2; apply++)
        {
            var errors = _reconciler.Apply(config);
            Assert.Contains(errors, e => e.Contains("br1/pb") && e.Contains("already has a port pa"));
            Assert.Empty(_reconciler.FindBridge("br1")!.Ports);
            Assert.Same(squatter, Assert.Single(_reconciler.FindBridge("br0")!.Ports));
        }

        // Once the name is free the pair comes up, both ends together.
        _reconciler.FindBridge("br0")!.RemovePort(squatter);
        Assert.Empty(_reconciler.RetryFailed());
        var pa = Assert.IsType<PatchPort>(_reconciler.FindBridge("br0")!.FindPort("pa"));
        Assert.Same(_reconciler.FindBridge("br1")!.FindPort("pb"), pa.Peer);
    }

    [Fact]
    public void FdbSettingsApply()
    {
        _reconciler.Apply(Config(new BridgeConfig("br0") { FdbLimit = 16, FdbAgingSeconds = 10 }));
        var br0 = _reconciler.FindBridge("br0")!;
        Assert.Equal(16, br0.Fdb.Limit);
        Assert.Equal(TimeSpan.FromSeconds(10), br0.Fdb.Aging);
        _reconciler.Apply(Config(new BridgeConfig("br0") { FdbLimit = 16, FdbAgingSeconds = 20 }));
        Assert.Same(br0, _reconciler.FindBridge("br0"));
        Assert.Equal(TimeSpan.FromSeconds(20), br0.Fdb.Aging);
        _reconciler.Apply(Config(new BridgeConfig("br0") { FdbLimit = 32 }));
        Assert.Equal(32, _reconciler.FindBridge("br0")!.Fdb.Limit);
    }
}

public sealed class SwitchReconcilerFdbTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("xenio-recon-").FullName;
    private readonly EpollLoop _loop = new("recon-fdb");
    private readonly SwitchReconciler _reconciler;

    public SwitchReconcilerFdbTests() => _reconciler = new SwitchReconciler(new PortFactory(_loop));

    public void Dispose()
    {
        _reconciler.Dispose();
        _loop.Dispose();
        Directory.Delete(_dir, true);
    }

    private PortConfig Stream(string name) =>
        new(name, "stream") { Options = new SortedDictionary<string, string> { ["listen"] = $"unix:{_dir}/{name}.sock" }, Trunks = "10,20" };

    [Fact]
    public void UnrelatedChangesKeepLearnedAddresses()
    {
        var s1 = Stream("s1");
        _reconciler.Apply(new SwitchConfig(new Dictionary<string, BridgeConfig> { ["br0"] = new("br0") { Ports = new Dictionary<string, PortConfig> { ["s1"] = s1 } } }));
        var br0 = _reconciler.FindBridge("br0")!;
        var port = br0.FindPort("s1")!;
        br0.Fdb.Learn(0x02_00_00_00_00_01, 10, port.Index);

        // Adding another port re-applies s1's unchanged settings: its FDB entries must stay.
        _reconciler.Apply(new SwitchConfig(new Dictionary<string, BridgeConfig> { ["br0"] = new("br0") { Ports = new Dictionary<string, PortConfig> { ["s1"] = s1, ["s2"] = Stream("s2") } } }));
        Assert.Equal(port.Index, br0.Fdb.Lookup(0x02_00_00_00_00_01, 10));

        // A real VLAN change flushes them (the port must not attract frames for VLANs it left).
        _reconciler.Apply(new SwitchConfig(new Dictionary<string, BridgeConfig> { ["br0"] = new("br0") { Ports = new Dictionary<string, PortConfig> { ["s1"] = s1 with { Trunks = "20" } } } }));
        Assert.True(br0.Fdb.Lookup(0x02_00_00_00_00_01, 10) < 0);
    }
}

/// <summary>Static FDB entries from the configuration: applied, moved, taken back, re-applied when their port returns.</summary>
public sealed class SwitchReconcilerStaticFdbTests : IDisposable
{
    private static readonly ulong Station = Frame.Mac(0x77);
    private readonly string _dir = Directory.CreateTempSubdirectory("xenio-recon-").FullName;
    private readonly EpollLoop _loop = new("recon-static");
    private readonly List<string> _log = [];
    private readonly SwitchReconciler _reconciler;

    public SwitchReconcilerStaticFdbTests() => _reconciler = new SwitchReconciler(new PortFactory(_loop), line => { lock (_log) _log.Add(line); });

    public void Dispose()
    {
        _reconciler.Dispose();
        _loop.Dispose();
        Directory.Delete(_dir, true);
    }

    private string SocketOf(string port) => $"{_dir}/{port}.sock";

    private PortConfig Stream(string name) =>
        new(name, "stream") { Options = new SortedDictionary<string, string> { ["listen"] = $"unix:{SocketOf(name)}" } };

    private static SwitchConfig Config(BridgeConfig bridge) => new(new Dictionary<string, BridgeConfig> { [bridge.Name] = bridge });

    private BridgeConfig Br0(params StaticFdbEntry[] entries) =>
        new("br0") { Ports = new Dictionary<string, PortConfig> { ["s1"] = Stream("s1"), ["s2"] = Stream("s2") }, StaticFdb = entries };

    private static StaticFdbEntry Static(ulong mac, int vlan, string port) => new(mac, vlan, port);

    private Bridge Bridge => _reconciler.FindBridge("br0")!;

    private FdbEntry? Entry(ulong mac, int vlan) => Bridge.WithLock(b => b.Fdb.Snapshot()).Cast<FdbEntry?>().SingleOrDefault(e => e!.Value.Mac == mac && e.Value.Vlan == vlan);

    [Fact]
    public void Entries_are_added_moved_and_taken_back_with_the_configuration()
    {
        Assert.Empty(_reconciler.Apply(Config(Br0(Static(Station, 0, "s1"), Static(Station, 10, "s2")))));
        Assert.Equal(new FdbEntry(Station, 0, Bridge.FindPort("s1")!.Index, true, TimeSpan.Zero), Entry(Station, 0)!.Value with { Age = TimeSpan.Zero });
        Assert.Equal(Bridge.FindPort("s2")!.Index, Bridge.Fdb.StaticPort(Station, 10));
        Bridge.Fdb.Learn(Frame.Mac(1), 0, Bridge.FindPort("s2")!.Index);

        // The configuration moves one entry to the other port and drops the other; a learned entry is not theirs to touch.
        Assert.Empty(_reconciler.Apply(Config(Br0(Static(Station, 0, "s2")))));
        Assert.Equal(Bridge.FindPort("s2")!.Index, Bridge.Fdb.StaticPort(Station, 0));
        Assert.Null(Entry(Station, 10));
        Assert.Equal(Bridge.FindPort("s2")!.Index, Bridge.Fdb.Lookup(Frame.Mac(1), 0));

        Assert.Empty(_reconciler.Apply(Config(Br0())));
        Assert.Equal(1, Bridge.Fdb.Count);
        lock (_log) Assert.Contains(_log, l => l == "fdb br0: static 02:00:00:00:00:77 vlan 10 removed");
    }

    [Fact]
    public void A_port_recreated_or_a_bridge_rebuilt_gets_its_entries_back()
    {
        var config = Br0(Static(Station, 0, "s1"));
        Assert.Empty(_reconciler.Apply(Config(config)));
        var old = Bridge.FindPort("s1")!;

        // New options re-create s1, whose removal flushed its entries, static ones included.
        var moved = Stream("s1") with { Options = new SortedDictionary<string, string> { ["listen"] = $"unix:{_dir}/elsewhere.sock" } };
        Assert.Empty(_reconciler.Apply(Config(config with { Ports = new Dictionary<string, PortConfig> { ["s2"] = Stream("s2"), ["s1"] = moved } })));
        var recreated = Bridge.FindPort("s1")!;
        Assert.NotSame(old, recreated);
        Assert.True(Entry(Station, 0)!.Value.Static);
        Assert.Equal(recreated.Index, Bridge.Fdb.StaticPort(Station, 0));

        // A new FDB limit builds a new bridge, and a new table.
        var before = Bridge;
        Assert.Empty(_reconciler.Apply(Config(config with { FdbLimit = 100 })));
        Assert.NotSame(before, Bridge);
        Assert.Equal(Bridge.FindPort("s1")!.Index, Bridge.Fdb.StaticPort(Station, 0));
    }

    [Fact]
    public void An_entry_for_a_port_the_bridge_lacks_is_an_error_until_the_port_joins_and_the_rest_stand()
    {
        var config = Config(Br0(Static(Station, 0, "vif3.0"), Static(Frame.Mac(5), 0, "s1")));
        var error = Assert.Single(_reconciler.Apply(config));
        Assert.Equal("static fdb entry br0 02:00:00:00:00:77 vlan 0: bridge br0 has no port vif3.0; the entry applies when that port joins", error);
        Assert.Equal([error], _reconciler.Errors);
        Assert.Equal(Bridge.FindPort("s1")!.Index, Bridge.Fdb.StaticPort(Frame.Mac(5), 0));
        Assert.Equal(-1, Bridge.Fdb.Lookup(Station, 0));

        // A port the reconciler does not make (netback's vif) joins: the housekeeping retry applies the entry.
        var vif = new RecordingPort("vif3.0");
        Bridge.AddPort(vif);
        Assert.Empty(_reconciler.RetryFailed());
        Assert.Empty(_reconciler.Errors);
        Assert.Equal(vif.Index, Bridge.Fdb.StaticPort(Station, 0));

        // It leaves, taking the entry with it, and comes back: no error stood in between to prompt a retry.
        Bridge.RemovePort(vif);
        Assert.Equal(-1, Bridge.Fdb.Lookup(Station, 0));
        Assert.Single(_reconciler.RetryFailed());
        Bridge.AddPort(vif);
        Assert.Empty(_reconciler.RetryFailed());
        Assert.Equal(vif.Index, Bridge.Fdb.StaticPort(Station, 0));
        lock (_log) Assert.Equal(2, _log.Count(l => l == error));
    }

    [Fact]
    public void An_entry_moved_to_a_missing_port_leaves_the_port_it_named()
    {
        Assert.Empty(_reconciler.Apply(Config(Br0(Static(Station, 0, "s1")))));
        Assert.Single(_reconciler.Apply(Config(Br0(Static(Station, 0, "gone")))));
        Assert.Equal(-1, Bridge.Fdb.Lookup(Station, 0));
    }

    [Fact]
    public void Entries_a_full_table_cannot_take_are_errors()
    {
        var config = Br0(Static(Frame.Mac(1), 0, "s1"), Static(Frame.Mac(2), 0, "s1")) with { FdbLimit = 1 };
        var error = Assert.Single(_reconciler.Apply(Config(config)));
        Assert.Contains("the FDB is full (1 entries)", error);
        Assert.Equal(1, Bridge.Fdb.Count);
    }

    [Fact]
    public void Frames_to_a_static_mac_go_to_its_port_and_frames_from_it_elsewhere_do_not_move_it()
    {
        Assert.Empty(_reconciler.Apply(Config(Br0(Static(Station, 0, "s1")))));
        // No flap damping: a learned entry would move on the first frame from elsewhere.
        Bridge.Fdb.MinPersistence = TimeSpan.Zero;
        using var behindS1 = StreamPortTests.ConnectUnix(SocketOf("s1"));
        using var behindS2 = StreamPortTests.ConnectUnix(SocketOf("s2"));
        QueuePort.WaitUntil(() => ((StreamPort)Bridge.FindPort("s1")!).Connected && ((StreamPort)Bridge.FindPort("s2")!).Connected);

        // The station's address arrives from behind s2 (a spoofer, a loop), flooded to s1 as any broadcast is.
        var spoofed = Frame.Build(Frame.Broadcast, Station);
        behindS2.Send(StreamPortTests.Prefixed(spoofed));
        Assert.Equal(spoofed, StreamPortTests.ReadFrame(behindS1));
        var toStation = Frame.Build(Station, Frame.Mac(2));
        behindS2.Send(StreamPortTests.Prefixed(toStation));
        Assert.Equal(toStation, StreamPortTests.ReadFrame(behindS1));
        Assert.Equal(Bridge.FindPort("s1")!.Index, Bridge.Fdb.StaticPort(Station, 0));

        // A flush forgets what was learned (Mac(2)), not the static entry.
        Assert.Equal(1, Bridge.WithLock(b => b.Fdb.Flush()));
        Assert.Equal(Bridge.FindPort("s1")!.Index, Bridge.Fdb.Lookup(Station, 0));
    }
}
