using XenIo.Cli.Config;
using Xunit;

namespace XenIo.Cli.Tests.Config;

/// <summary>Xen's docs/misc/xl-network-configuration examples and keys.</summary>
public class VifSpecTests
{
    [Fact]
    public void Doc_example_with_model_and_bridge()
    {
        var v = VifSpec.Parse("mac=00:16:3E:74:3d:76,model=rtl8139,bridge=xenbr0", 0);
        Assert.Equal("00:16:3e:74:3d:76", v.Mac);
        Assert.Equal("rtl8139", v.Model);
        Assert.Equal("xenbr0", v.Bridge);
    }

    [Fact]
    public void Doc_examples_mac_only_and_empty()
    {
        Assert.Equal("00:16:3e:74:34:32", VifSpec.Parse("mac=00:16:3E:74:34:32", 0).Mac);
        var empty = VifSpec.Parse("", 3);
        Assert.Null(empty.Mac);
        Assert.Equal("xenbr0", empty.Bridge);
        Assert.Equal(3, empty.Devid);
        Assert.Equal("xenbr1", VifSpec.Parse("mac=00:16:3e:5f:48:e4,bridge=xenbr1", 1).Bridge);
    }

    [Fact]
    public void All_keys()
    {
        var v = VifSpec.Parse("mac=00:16:3e:00:00:01, bridge=br1, ip=198.18.0.2/24 198.18.1.2, vifname=web0, mtu=9000, vlan=10, script=vif-bridge, type=vif, devid=4", 0);
        Assert.Equal("198.18.0.2/24 198.18.1.2", v.Ip);
        Assert.Equal("web0", v.Vifname);
        Assert.Equal(9000, v.Mtu);
        Assert.Equal(10, v.Vlan);
        Assert.Equal("vif-bridge", v.Script);
        Assert.Equal(4, v.Devid);
    }

    [Theory]
    [InlineData("10Mb/s", 62_500UL, 50_000U)]       // 1.25 MB/s over 50 ms
    [InlineData("10Mb/s@20ms", 25_000UL, 20_000U)]
    [InlineData("1MB/s@20ms", 20_000UL, 20_000U)]
    [InlineData("100KB/s@1s", 100_000UL, 1_000_000U)]
    [InlineData("1Gb/s@100us", 12_500UL, 100U)]
    [InlineData("2.5MB/s", 125_000UL, 50_000U)]
    [InlineData("8b/s@1s", 1UL, 1_000_000U)]
    public void Rates_become_bytes_per_interval(string rate, ulong bytes, uint usecs)
    {
        var r = VifSpec.ParseRate(rate);
        Assert.Equal(bytes, r.BytesPerInterval);
        Assert.Equal(usecs, r.IntervalUsecs);
        Assert.Equal($"{bytes},{usecs}", r.ToXenstore());
    }

    [Theory]
    [InlineData("rate=10Mb", "bad rate")]
    [InlineData("rate=10Tb/s", "bad rate")]
    [InlineData("rate=10Mb/s@5m", "bad rate")]
    [InlineData("rate=1b/s@1ms", "at least one byte")]
    [InlineData("mac=00:16:3e:00:00", "bad mac")]
    [InlineData("mac=01:16:3e:00:00:01", "unicast")]
    [InlineData("mac=00:16:3e:00:00:0g", "bad mac")]
    [InlineData("mtu=70000", "bad mtu")]
    [InlineData("vlan=0", "bad vlan")]
    [InlineData("vlan=4095", "bad vlan")]
    [InlineData("ip=300.1.1.1", "bad ip")]
    [InlineData("ip=198.18.0.1/33", "prefix length")]
    [InlineData("vifname=averyveryverylongname", "bad vifname")]
    [InlineData("vifname=a/b", "bad vifname")]
    [InlineData("bridge=", "bad bridge")]
    [InlineData("colour=red", "unknown vif key 'colour'")]
    public void Malformed_specs_say_what_is_wrong(string spec, string message)
    {
        var e = Assert.Throws<FormatException>(() => VifSpec.Parse(spec, 0));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Ignored_keys_warn()
    {
        var warnings = new List<string>();
        VifSpec.Parse("backend=dom0,bridge=xenbr0", 0, warnings.Add);
        Assert.Single(warnings);
        Assert.Contains("backend", warnings[0], StringComparison.Ordinal);
    }
}
