using XenIo.Cli.Config;
using XenIo.Hypervisor.Domains;
using Xunit;

namespace XenIo.Cli.Tests.Config;

/// <summary>
/// The examples and keys of Xen's xl-network-configuration(5) and xl-disk-configuration(5) that the
/// spec tests do not already cover, as they appear in a config file.
/// </summary>
public class XlDocExamplesTests
{
    [Fact]
    public void The_network_documents_config_line_and_rate_examples()
    {
        var (c, warnings) = DomainConfigReader.Parse("name='d'\nvif = [ 'mac=00:16:3E:74:34:32', 'mac=00:16:3e:5f:48:e4,bridge=xenbr1' ]\n", "d.cfg");
        Assert.Equal([("00:16:3e:74:34:32", "xenbr0", 0), ("00:16:3e:5f:48:e4", "xenbr1", 1)], c.Vifs.Select(v => (v.Mac, v.Bridge, v.Devid)));
        Assert.Empty(warnings);
        Assert.Equal(new VifRate(1_250_000 / 20, 50_000), VifSpec.Parse("rate=10Mb/s", 0).Rate);
        Assert.Equal(new VifRate(250_000 / 20, 50_000), VifSpec.Parse("rate=250KB/s", 0).Rate);
        Assert.Equal(new VifRate(20_000, 20_000), VifSpec.Parse("rate=1MB/s@20ms", 0).Rate);
    }

    [Theory]
    [InlineData("gatewaydev=eth0")]
    [InlineData("netdev=eth0")]
    [InlineData("backend=0")]
    public void Documented_keys_without_meaning_here_warn(string spec)
    {
        var warned = new List<string>();
        var v = VifSpec.Parse("mac=00:16:3e:00:00:01," + spec, 0, warned.Add);
        Assert.Equal("00:16:3e:00:00:01", v.Mac);
        Assert.Single(warned);
    }

    [Fact]
    public void The_documented_vif_keys()
    {
        var v = VifSpec.Parse("type=ioemu,model=e1000,vifname=web-a,script=vif-route,ip=198.18.0.7,devid=2,mtu=1400", 0);
        Assert.Equal(("ioemu", "e1000", "web-a", "vif-route", "198.18.0.7", 2, 1400), (v.Type, v.Model, v.Vifname, v.Script, v.Ip, v.Devid, v.Mtu));
    }

    [Fact]
    public void The_disk_documents_config_line()
    {
        var (c, _) = DomainConfigReader.Parse("name='d'\ndisk = [ '/dev/vg/guest-volume,,hda', '/root/image.iso,,hdc,cdrom' ]\n", "d.cfg");
        Assert.Equal([("/dev/vg/guest-volume", "hda", false, false), ("/root/image.iso", "hdc", true, true)],
            c.Disks.Select(d => (d.Target!, d.Vdev, d.Cdrom, d.ReadOnly)));
    }

    [Theory]
    [InlineData("qcow2:/img/a.q,xvda,w", DiskFormat.Qcow2, null)]
    [InlineData("vhd:/img/a.vhd,xvda,w", DiskFormat.Vhd, null)]
    [InlineData("tapdisk:aio:/img/a.img,xvda,w", DiskFormat.Raw, null)]
    [InlineData("tap2:/img/a.img,xvda,w", DiskFormat.Raw, null)]
    [InlineData("ioemu:/img/a.img,xvda,w", DiskFormat.Raw, null)]
    [InlineData("iscsi:iqn.2001-05.com.example:disk,xvda,w", DiskFormat.Raw, "block-iscsi")]
    [InlineData("drbd:res0,xvda,w", DiskFormat.Raw, "block-drbd")]
    [InlineData("nbd:host:1234,xvda,w", DiskFormat.Raw, "block-nbd")]
    [InlineData("enbd:host:1234,xvda,w", DiskFormat.Raw, "block-enbd")]
    public void Deprecated_format_and_script_prefixes(string spec, DiskFormat format, string? script)
    {
        var d = DiskSpec.Parse(spec);
        Assert.Equal((format, script, "xvda"), (d.Format, d.Script, d.Vdev));
    }

    [Fact]
    public void The_other_disk_parameters_and_flags()
    {
        var d = DiskSpec.Parse("/img/a.img,raw,xvda,rw,backendtype=qdisk,direct-io-safe,no-discard,script=block-x");
        Assert.Equal(("qdisk", true, false, "block-x"), (d.BackendType, d.DirectIoSafe, d.Discard, d.Script));
        Assert.True(DiskSpec.Parse("/img/a.img,raw,xvda,rw,discard").Discard);
        // A target that is not a path gets /dev in front, as the document says.
        Assert.Equal("/dev/vg/lv", DiskSpec.Parse("vg/lv,raw,xvda").Target);
        // An empty value is the default: format raw, access rw (r for a cdrom).
        var defaults = DiskSpec.Parse("/img/a.img,,xvda,");
        Assert.Equal((DiskFormat.Raw, false), (defaults.Format, defaults.ReadOnly));
    }
}
