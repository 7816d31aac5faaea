using XenIo.Cli.Config;
using XenIo.Hypervisor.Domains;
using Xunit;

namespace XenIo.Cli.Tests.Config;

/// <summary>Every example of Xen's docs/misc/xl-disk-configuration, and what each must mean.</summary>
public class DiskSpecTests
{
    [Theory]
    [InlineData("/dev/vg/guest-volume,,hda")]
    [InlineData("/dev/vg/guest-volume,raw,hda,rw")]
    [InlineData("format=raw, vdev=hda, access=rw, target=/dev/vg/guest-volume")]
    [InlineData("raw:/dev/vg/guest-volume,hda,w")]
    public void Equivalent_writable_volume_specs(string spec)
    {
        var d = DiskSpec.Parse(spec);
        Assert.Equal("/dev/vg/guest-volume", d.Target);
        Assert.Equal(DiskFormat.Raw, d.Format);
        Assert.Equal("hda", d.Vdev);
        Assert.Equal(3 << 8, d.VirtualDevice);
        Assert.False(d.ReadOnly);
        Assert.False(d.Cdrom);
    }

    [Theory]
    [InlineData("/root/image.iso,,hdc,cdrom")]
    [InlineData("/root/image.iso,,hdc,,cdrom")]
    [InlineData("/root/image.iso,raw,hdc,devtype=cdrom")]
    [InlineData("format=raw, vdev=hdc, access=ro, devtype=cdrom, target=/root/image.iso")]
    [InlineData("raw:/root/image.iso,hdc:cdrom,ro")]
    public void Equivalent_cdrom_specs(string spec)
    {
        var d = DiskSpec.Parse(spec);
        Assert.Equal("/root/image.iso", d.Target);
        Assert.Equal("hdc", d.Vdev);
        Assert.Equal(22 << 8, d.VirtualDevice);
        Assert.True(d.ReadOnly);
        Assert.True(d.Cdrom);
    }

    [Fact]
    public void Empty_cdrom_in_xend_syntax()
    {
        var d = DiskSpec.Parse(",hdc:cdrom,r");
        Assert.Null(d.Target);
        Assert.True(d.Cdrom);
        Assert.True(d.ReadOnly);
        Assert.Equal("hdc", d.Vdev);
    }

    [Fact]
    public void Target_takes_the_rest_including_commas()
    {
        var d = DiskSpec.Parse("vdev=xvdb, access=ro, target=/images/a,b.img ");
        Assert.Equal("/images/a,b.img ", d.Target);
        Assert.True(d.ReadOnly);
    }

    [Theory]
    [InlineData("tap:aio:/img/a.img,xvda,w", "/img/a.img", DiskFormat.Raw)]
    [InlineData("tap:qcow2:/img/a.qcow2,xvda,w", "/img/a.qcow2", DiskFormat.Qcow2)]
    [InlineData("phy:vg/lv,xvda,w", "/dev/vg/lv", DiskFormat.Raw)]
    [InlineData("file:/img/a.img,xvda,w", "/img/a.img", DiskFormat.Raw)]
    public void Deprecated_prefixes_are_stripped(string spec, string target, DiskFormat format)
    {
        var d = DiskSpec.Parse(spec);
        Assert.Equal(target, d.Target);
        Assert.Equal(format, d.Format);
        Assert.Equal("xvda", d.Vdev);
    }

    [Fact]
    public void Flags_and_keys()
    {
        var d = DiskSpec.Parse("/img/a.img,qcow2,xvdb,ro,no-discard,direct-io-safe,backendtype=qdisk,script=block-x");
        Assert.Equal(DiskFormat.Qcow2, d.Format);
        Assert.False(d.Discard);
        Assert.True(d.DirectIoSafe);
        Assert.Equal("qdisk", d.BackendType);
        Assert.Equal("block-x", d.Script);
        Assert.Equal((202 << 8) | (1 << 4), d.VirtualDevice);
    }

    [Theory]
    [InlineData("xvda", (202 << 8) | 0)]
    [InlineData("xvdb3", (202 << 8) | (1 << 4) | 3)]
    [InlineData("xvdp15", (202 << 8) | (15 << 4) | 15)]
    [InlineData("xvdq", (1 << 28) | (16 << 8))]
    [InlineData("xvdaa", (1 << 28) | (26 << 8))]
    [InlineData("xvdq1", (1 << 28) | (16 << 8) | 1)]
    [InlineData("d0p1", (202 << 8) | 1)]
    [InlineData("d16p0", (1 << 28) | (16 << 8))]
    [InlineData("hda", 3 << 8)]
    [InlineData("hdb1", (3 << 8) | (1 << 6) | 1)]
    [InlineData("hdd", (22 << 8) | (1 << 6))]
    [InlineData("sda", 8 << 8)]
    [InlineData("sdb2", (8 << 8) | (1 << 4) | 2)]
    [InlineData("51712", 51712)]
    public void Vdev_numbers_follow_vbd_interface(string vdev, int expected) =>
        Assert.Equal(expected, Vdev.Parse(vdev));

    [Theory]
    [InlineData("xvd")]
    [InlineData("xvdA")]
    [InlineData("xvda0")]
    [InlineData("hde")]
    [InlineData("sdq")]
    [InlineData("vda")]
    [InlineData("0")]
    [InlineData("d1p")]
    public void Unknown_vdevs_are_refused(string vdev) => Assert.Null(Vdev.Parse(vdev));

    [Theory]
    [InlineData("/img/a.img,raw", "has no vdev")]
    [InlineData("/img/a.img,vmdk,xvda", "bad format 'vmdk'")]
    [InlineData("/img/a.img,raw,xvda,rx", "bad access 'rx'")]
    [InlineData("/img/a.img,raw,xvda,rw,extra", "too many positional")]
    [InlineData("/img/a.img,raw,xvda,vdev=xvdb", "given twice")]
    [InlineData("/img/a.img,raw,xvda,devtype=floppy", "bad devtype")]
    [InlineData("/img/a.img,raw,xvda,frobnicate=1", "unknown disk parameter 'frobnicate'")]
    [InlineData(",,xvda", "has no target")]
    [InlineData("/x.iso,raw,hdc,rw,cdrom", "cdrom is read-only")]
    [InlineData("/img/a.img,raw,vda", "bad vdev 'vda'")]
    public void Malformed_specs_say_what_is_wrong(string spec, string message)
    {
        var e = Assert.Throws<FormatException>(() => DiskSpec.Parse(spec));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }
}
