using XenIo.Net.Frames;
using XenIo.VSwitch.Core;
using XenIo.VSwitch.Management;
using Xunit;

namespace XenIo.VSwitch.Tests.Management;

public sealed class SwitchConfigMappingTests
{
    private static SwitchConfig Sample()
    {
        var access = new PortConfig("vif1", "tap") { VlanMode = VlanMode.Access, Tag = 10, AdminUp = false, Mtu = 9000, Ingress = new RateConfig(1_000_000, 0, 50_000, 0) };
        var trunk = new PortConfig("up0", "vxlan")
        {
            Options = new SortedDictionary<string, string> { ["local"] = "198.18.0.1", ["vni"] = "42", ["remotes"] = "198.18.0.2,198.18.0.3/7" },
            Trunks = "10,20,100-110",
            Egress = new RateConfig(0, 1000, 0, 100),
        };
        var native = new PortConfig("qemu0", "stream") { VlanMode = VlanMode.NativeUntagged, Tag = 20, Options = new SortedDictionary<string, string> { ["listen"] = "unix:/run/q.sock" } };
        var patchA = new PortConfig("pa", "patch") { Options = new SortedDictionary<string, string> { ["peer"] = "br1/pb" } };
        var mirror = new MirrorConfig("m0", "/tmp/m0.pcapng") { Ports = ["vif1", "up0"], Directions = CaptureDirection.Ingress, Vlans = "10", Filter = "icmp or arp", Snaplen = 128, PcapNg = true };
        var br0 = new BridgeConfig("xenbr0")
        {
            Mtu = 9000,
            FdbAgingSeconds = 60,
            FdbLimit = 1024,
            Ports = new SortedDictionary<string, PortConfig> { ["vif1"] = access, ["up0"] = trunk, ["qemu0"] = native, ["pa"] = patchA },
            Mirrors = new SortedDictionary<string, MirrorConfig> { ["m0"] = mirror },
            StaticFdb = [new(0x02_00_00_00_00_01, 10, "vif1"), new(0x02_00_00_00_00_0a, 0, "up0"), new(0x00_16_3e_00_00_01, 0, "vif3.0")],
        };
        var br1 = new BridgeConfig("br1") { Ports = new SortedDictionary<string, PortConfig> { ["pb"] = new PortConfig("pb", "patch") { Options = new SortedDictionary<string, string> { ["peer"] = "xenbr0/pa" } } } };
        return new SwitchConfig(new SortedDictionary<string, BridgeConfig> { ["xenbr0"] = br0, ["br1"] = br1 });
    }

    [Fact]
    public void RoundTripKeepsEverything()
    {
        var config = Sample();
        var keys = SwitchConfigMapping.ToKeys(config);
        var errors = new List<ConfigError>();
        var back = SwitchConfigMapping.Parse(keys, errors);
        Assert.Empty(errors);
        Assert.Equal(config.Bridges.Keys, back.Bridges.Keys);
        foreach (var (name, bridge) in config.Bridges) Assert.Equal(bridge, back.Bridges[name]);
        Assert.Equal(keys, SwitchConfigMapping.ToKeys(back));
    }

    [Fact]
    public void KeysHaveTheDocumentedLayout()
    {
        var keys = SwitchConfigMapping.ToKeys(Sample());
        Assert.Equal("9000", keys["xenbr0/mtu"]);
        Assert.Equal("60", keys["xenbr0/fdb-aging"]);
        Assert.Equal("1024", keys["xenbr0/fdb-limit"]);
        Assert.Equal("tap", keys["xenbr0/port/vif1/kind"]);
        Assert.Equal("access", keys["xenbr0/port/vif1/vlan-mode"]);
        Assert.Equal("10", keys["xenbr0/port/vif1/tag"]);
        Assert.Equal("down", keys["xenbr0/port/vif1/admin"]);
        Assert.Equal("1000000", keys["xenbr0/port/vif1/ingress/bytes-per-sec"]);
        Assert.Equal("10,20,100-110", keys["xenbr0/port/up0/trunks"]);
        Assert.Equal("42", keys["xenbr0/port/up0/option/vni"]);
        Assert.False(keys.ContainsKey("xenbr0/port/up0/tag"));
        Assert.Equal("pcapng", keys["xenbr0/mirror/m0/format"]);
        Assert.Equal("in", keys["xenbr0/mirror/m0/directions"]);
        // VLAN, then the MAC with '-' (xenstore paths do not allow ':'), as the FDB keys its entries.
        Assert.Equal("vif1", keys["xenbr0/fdb-static/10/02-00-00-00-00-01"]);
        Assert.Equal("up0", keys["xenbr0/fdb-static/0/02-00-00-00-00-0a"]);
        Assert.Equal("vif3.0", keys["xenbr0/fdb-static/0/00-16-3e-00-00-01"]);
    }

    [Fact]
    public void DirectoryNodesAndBareBridgesParse()
    {
        var keys = new Dictionary<string, string> { ["xenbr0"] = "", ["br1"] = "", ["br1/port"] = "", ["br1/port/p1"] = "", ["br1/port/p1/kind"] = "tap", ["br1/port/p1/option"] = "" };
        var errors = new List<ConfigError>();
        var config = SwitchConfigMapping.Parse(keys, errors);
        Assert.Empty(errors);
        Assert.Equal(new BridgeConfig("xenbr0"), config.Bridges["xenbr0"]);
        var port = config.Bridges["br1"].Ports["p1"];
        Assert.Equal(VlanMode.Trunk, port.VlanMode);
        Assert.True(port.AdminUp);
        Assert.Empty(port.Options);
    }

    public static TheoryData<string, string, string, string> BadKeys => new()
    {
        // key, value, the key the error names, a word the message must contain
        { "br0/mtu", "67", "br0/mtu", "68-65535" },
        { "br0/mtu", "abc", "br0/mtu", "integer" },
        { "br0/fdb-aging", "0", "br0/fdb-aging", "1-1000000" },
        { "br0/fdb-limit", "-5", "br0/fdb-limit", "integer" },
        { "br0/colour", "red", "br0/colour", "unknown bridge key" },
        { "br0/port/p1/kind", "floppy", "br0/port/p1/kind", "tap|internal|uplink|stream|vxlan|patch" },
        { "br0/port/p1/admin", "maybe", "br0/port/p1/admin", "up|down" },
        { "br0/port/p1/vlan-mode", "hybrid", "br0/port/p1/vlan-mode", "access|trunk|native-tagged|native-untagged" },
        { "br0/port/p1/tag", "4095", "br0/port/p1/tag", "1-4094" },
        { "br0/port/p1/tag", "0", "br0/port/p1/tag", "1-4094" },
        { "br0/port/p1/trunks", "10-5", "br0/port/p1/trunks", "VLAN ids" },
        { "br0/port/p1/trunks", "x", "br0/port/p1/trunks", "VLAN ids" },
        { "br0/port/p1/mtu", "70000", "br0/port/p1/mtu", "68-65535" },
        { "br0/port/p1/ingress/bits-per-sec", "1", "br0/port/p1/ingress/bits-per-sec", "bytes-per-sec" },
        { "br0/port/p1/egress/packets-per-sec", "-1", "br0/port/p1/egress/packets-per-sec", "integer" },
        { "br0/port/p1/ingress/bytes-burst", "5000", "br0/port/p1/ingress/bytes-burst", "set ingress/bytes-per-sec" },
        { "br0/port/p1/egress/packets-burst", "10", "br0/port/p1/egress/packets-burst", "set egress/packets-per-sec" },
        { "br0/port/p1/speed", "fast", "br0/port/p1/speed", "unknown port key" },
        { "br0/mirror/m/directions", "sideways", "br0/mirror/m/directions", "in|out|both" },
        { "br0/mirror/m/snaplen", "0", "br0/mirror/m/snaplen", "integer" },
        { "br0/mirror/m/format", "erf", "br0/mirror/m/format", "pcap|pcapng" },
        { "br0/mirror/m/vlans", "a-b", "br0/mirror/m/vlans", "VLAN ids" },
        { "br0/mirror/m/ports", "a b", "br0/mirror/m/ports", "port names" },
        { "br0/mirror/m/depth", "3", "br0/mirror/m/depth", "unknown mirror key" },
        { "br0/fdb-static/0/01-00-5e-00-00-01", "p1", "br0/fdb-static/0/01-00-5e-00-00-01", "valid: a unicast MAC" },
        { "br0/fdb-static/0/ff-ff-ff-ff-ff-ff", "p1", "br0/fdb-static/0/ff-ff-ff-ff-ff-ff", "valid: a unicast MAC" },
        { "br0/fdb-static/0/00-00-00-00-00-00", "p1", "br0/fdb-static/0/00-00-00-00-00-00", "valid: a unicast MAC" },
        { "br0/fdb-static/0/02-00-00-00-01", "p1", "br0/fdb-static/0/02-00-00-00-01", "e.g. 02-00-00-00-00-01" },
        { "br0/fdb-static/0/02-00-00-00-00-0g", "p1", "br0/fdb-static/0/02-00-00-00-00-0g", "e.g. 02-00-00-00-00-01" },
        { "br0/fdb-static/0/02_00_00_00_00_01", "p1", "br0/fdb-static/0/02_00_00_00_00_01", "e.g. 02-00-00-00-00-01" },
        { "br0/fdb-static/4095/02-00-00-00-00-01", "p1", "br0/fdb-static/4095/02-00-00-00-00-01", "0-4094" },
        { "br0/fdb-static/-1/02-00-00-00-00-01", "p1", "br0/fdb-static/-1/02-00-00-00-00-01", "0-4094" },
        { "br0/fdb-static/ten/02-00-00-00-00-01", "p1", "br0/fdb-static/ten/02-00-00-00-00-01", "0-4094" },
        { "br0/fdb-static/0/02-00-00-00-00-01", "", "br0/fdb-static/0/02-00-00-00-00-01", "the name of a port" },
        { "br0/fdb-static/0/02-00-00-00-00-01", "a port", "br0/fdb-static/0/02-00-00-00-00-01", "the name of a port" },
        { "br0/fdb-static/02-00-00-00-00-01", "p1", "br0/fdb-static/02-00-00-00-00-01", "fdb-static/<vlan>/<mac> = <port>" },
        { "br0/fdb-static/0/02-00-00-00-00-01/port", "p1", "br0/fdb-static/0/02-00-00-00-00-01/port", "fdb-static/<vlan>/<mac> = <port>" },
    };

    [Theory]
    [MemberData(nameof(BadKeys))]
    public void EveryBadValueIsNamedWithWhatIsValid(string key, string value, string errorKey, string valid)
    {
        var keys = new Dictionary<string, string>
        {
            ["br0/port/p1/kind"] = "tap",
            ["br0/port/p2/kind"] = "tap",
            ["br0/mirror/m/file"] = "/tmp/m.pcap",
            ["br0/fdb-static/0/02-00-00-00-00-99"] = "p2",
            [key] = value,
        };
        var errors = new List<ConfigError>();
        var config = SwitchConfigMapping.Parse(keys, errors);
        var error = Assert.Single(errors);
        Assert.Equal(errorKey, error.Key);
        Assert.Equal(value, error.Value);
        Assert.Contains(valid, error.Message);
        Assert.Contains($"/xenio/switch/{errorKey} = '{value}'", error.ToString());
        if (key.StartsWith("br0/port/p1/", StringComparison.Ordinal))
        {
            // Only the broken port is left out; the rest of the bridge stands.
            Assert.False(config.Bridges["br0"].Ports.ContainsKey("p1"));
            Assert.True(config.Bridges["br0"].Ports.ContainsKey("p2"));
        }
        else if (key.StartsWith("br0/mirror/", StringComparison.Ordinal))
        {
            Assert.Empty(config.Bridges["br0"].Mirrors);
            Assert.Equal(2, config.Bridges["br0"].Ports.Count);
        }
        else if (key.StartsWith("br0/fdb-static/", StringComparison.Ordinal))
        {
            // Only the broken entry is left out.
            Assert.Equal([new StaticFdbEntry(0x02_00_00_00_00_99, 0, "p2")], config.Bridges["br0"].StaticFdb);
            Assert.Equal(2, config.Bridges["br0"].Ports.Count);
            Assert.Single(config.Bridges["br0"].Mirrors);
        }
        else
        {
            Assert.False(config.Bridges.ContainsKey("br0"));
        }
    }

    [Fact]
    public void StaticFdbEntriesParseBelowTheirDirectoryNodesAndMayNameAVif()
    {
        var keys = new Dictionary<string, string>
        {
            ["br1"] = "", ["br1/fdb-static"] = "", ["br1/fdb-static/0"] = "", ["br1/fdb-static/20"] = "",
            ["br1/fdb-static/0/02-00-00-00-00-01"] = "tap0",
            ["br1/fdb-static/20/02-00-00-00-00-01"] = "vif3.0",
            ["br1/fdb-static/20/00-16-3E-AB-CD-EF"] = "tap0",
        };
        var errors = new List<ConfigError>();
        var bridge = SwitchConfigMapping.Parse(keys, errors).Bridges["br1"];
        Assert.Empty(errors);
        Assert.Equal(
            [new StaticFdbEntry(0x02_00_00_00_00_01, 0, "tap0"), new StaticFdbEntry(0x00_16_3e_ab_cd_ef, 20, "tap0"), new StaticFdbEntry(0x02_00_00_00_00_01, 20, "vif3.0")],
            bridge.StaticFdb.OrderBy(e => (e.Vlan, e.Mac)));
        // Written back in the canonical spelling.
        Assert.Equal("tap0", SwitchConfigMapping.ToKeys(new SwitchConfig(new Dictionary<string, BridgeConfig> { ["br1"] = bridge }))["br1/fdb-static/20/00-16-3e-ab-cd-ef"]);
    }

    [Fact]
    public void One_vlan_and_mac_spelled_two_ways_keeps_the_spelling_xenio_writes_and_names_the_other()
    {
        var errors = new List<ConfigError>();
        var config = SwitchConfigMapping.Parse(new Dictionary<string, string>
        {
            ["br0/fdb-static/10/02-00-00-00-00-0a"] = "p1",
            ["br0/fdb-static/010/02-00-00-00-00-0A"] = "p2",
        }, errors);
        var error = Assert.Single(errors);
        Assert.Equal(("br0/fdb-static/010/02-00-00-00-00-0A", "p2"), (error.Key, error.Value));
        Assert.Contains("the same entry as br0/fdb-static/10/02-00-00-00-00-0a", error.Message);
        Assert.Equal([new StaticFdbEntry(0x02_00_00_00_00_0a, 10, "p1")], config.Bridges["br0"].StaticFdb);
    }

    [Theory]
    [InlineData("02:00:00:00:00:0a", 0x02_00_00_00_00_0aUL)]
    [InlineData("02-00-00-00-00-0A", 0x02_00_00_00_00_0aUL)]
    [InlineData("ff:ff:ff:ff:ff:ff", 0xff_ff_ff_ff_ff_ffUL)]
    [InlineData("02:00-00:00:00:0a", null)]
    [InlineData("02:00:00:00:00", null)]
    [InlineData("02:00:00:00:00:0a:01", null)]
    [InlineData("2:00:00:00:00:0a0", null)]
    [InlineData("02:00:00:00:00:+a", null)]
    [InlineData("0200.0000.000a", null)]
    public void Macs_are_six_hex_pairs_with_one_separator(string text, ulong? expected)
    {
        Assert.Equal(expected is not null, MacAddress.TryParse(text, out var mac, dashes: true));
        if (expected is { } e) Assert.Equal(e, mac);
    }

    [Fact]
    public void MissingKindTagAndFileAreErrors()
    {
        var errors = new List<ConfigError>();
        SwitchConfigMapping.Parse(new Dictionary<string, string> { ["b/port/p/admin"] = "up" }, errors);
        Assert.Equal("b/port/p/kind", Assert.Single(errors).Key);

        errors.Clear();
        SwitchConfigMapping.Parse(new Dictionary<string, string> { ["b/port/p/kind"] = "tap", ["b/port/p/vlan-mode"] = "access" }, errors);
        var e = Assert.Single(errors);
        Assert.Equal("b/port/p/tag", e.Key);
        Assert.Contains("required with vlan-mode access", e.Message);

        errors.Clear();
        SwitchConfigMapping.Parse(new Dictionary<string, string> { ["b/mirror/m/file"] = "relative.pcap" }, errors);
        Assert.Equal("b/mirror/m/file", Assert.Single(errors).Key);
    }

    [Theory]
    [InlineData("this-name-is-too-long")]
    [InlineData("bad.name")]
    public void BadNamesAreRejected(string name)
    {
        var errors = new List<ConfigError>();
        var config = SwitchConfigMapping.Parse(new Dictionary<string, string> { [$"{name}/mtu"] = "1500", [$"ok/port/{name}/kind"] = "tap" }, errors);
        Assert.Equal(2, errors.Count);
        Assert.Equal(["ok"], config.Bridges.Keys);
        Assert.Empty(config.Bridges["ok"].Ports);
    }

    [Fact]
    public void VlanAndRatesBuildLiveObjects()
    {
        var port = new PortConfig("p", "tap") { VlanMode = VlanMode.NativeTagged, Tag = 7, Trunks = "7-9", Ingress = new RateConfig(1000, 10, 0, 0) };
        var vlan = port.BuildVlan();
        Assert.Equal(VlanMode.NativeTagged, vlan.Mode);
        Assert.Equal(7, vlan.Tag);
        Assert.True(vlan.Trunks.Contains(9));
        Assert.False(vlan.Trunks.Contains(10));
        var limiter = port.Ingress.Build();
        Assert.NotNull(limiter);
        Assert.Equal(1000, limiter.Bytes!.Size);
        Assert.Equal(10, limiter.Packets!.Size);
        Assert.Null(port.Egress.Build());
    }

    [Fact]
    public void A_burst_needs_the_rate_of_its_own_bucket()
    {
        // A burst is extra tokens of a bucket; without that bucket's rate there is no bucket, and the burst
        // was dropped without a word (no limiter at all).
        var errors = new List<ConfigError>();
        var keys = new Dictionary<string, string> { ["kind"] = "tap", ["ingress/packets-per-sec"] = "100", ["ingress/bytes-burst"] = "5000" };
        Assert.Null(SwitchConfigMapping.ParsePort("br0/port/p", "p", keys, errors));
        var error = Assert.Single(errors);
        Assert.Equal(("br0/port/p/ingress/bytes-burst", "5000"), (error.Key, error.Value));
        Assert.Contains("ingress/bytes-per-sec", error.Message);

        errors.Clear();
        keys["ingress/bytes-per-sec"] = "1000";
        var port = SwitchConfigMapping.ParsePort("br0/port/p", "p", keys, errors);
        Assert.Empty(errors);
        Assert.Equal(new RateConfig(1000, 100, 5000, 0), port!.Ingress);

        // A config built in code is held to the same rule when the port is configured.
        var built = Assert.Throws<ArgumentException>(() => new RateConfig(0, 0, 5000, 0).Build());
        Assert.Contains("bytes-burst", built.Message);
        Assert.Contains("bytes-per-sec", built.Message);
    }

    [Theory]
    [InlineData("access")]
    [InlineData("native-tagged")]
    [InlineData("native-untagged")]
    public void EveryTagTheMappingAcceptsBuildsALiveVlan(string mode)
    {
        // A tag the mapping let through but PortVlan refused left the port attached as an all-VLAN trunk.
        for (var tag = 0; tag <= 4096; tag++)
        {
            var errors = new List<ConfigError>();
            var port = SwitchConfigMapping.ParsePort("br0/port/p1", "p1",
                new Dictionary<string, string> { ["kind"] = "tap", ["vlan-mode"] = mode, ["tag"] = tag.ToString(System.Globalization.CultureInfo.InvariantCulture) }, errors);
            var built = port is null ? null : Record.Exception(() => port.BuildVlan());
            Assert.True(port is null == tag is 0 or > 4094, $"tag {tag}: the mapping {(port is null ? "refused" : "accepted")} it");
            Assert.Null(built);
        }
    }

    [Fact]
    public void A_patch_port_whose_peer_is_itself_is_refused_naming_peer_and_the_value()
    {
        var errors = new List<ConfigError>();
        var config = SwitchConfigMapping.Parse(new Dictionary<string, string>
        {
            ["br1/port/p0/kind"] = "patch",
            ["br1/port/p0/option/peer"] = "br1/p0",
            ["br1/port/p1/kind"] = "patch",
            ["br1/port/p1/option/peer"] = "br2/p1", // the same name on another bridge is a real peer
        }, errors);
        var error = Assert.Single(errors);
        Assert.Equal(("br1/port/p0/option/peer", "br1/p0"), (error.Key, error.Value));
        Assert.Contains("itself", error.Message);
        Assert.Equal(["p1"], config.Bridges["br1"].Ports.Keys);
    }
}
