using System.Text.Json;
using XenIo.Cli.Verbs;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Domains.Hyperd;
using Xunit;

namespace XenIo.Cli.Tests.Hyperd;

/// <summary>The device and host verbs' own logic: xl's attach syntax, its listing formats, info and uptime.</summary>
public class DeviceVerbsTests
{
    [Fact]
    public void Network_attach_words_are_one_vif_spec_as_xl_joins_them()
    {
        var vif = DeviceVerbs.ParseVif(["mac=00:16:3e:aa:bb:cc", "bridge=br1", "ip=198.18.0.5/24", "vifname=web-b", "rate=10Mb/s"]);
        Assert.Equal(("00:16:3e:aa:bb:cc", "br1", "198.18.0.5/24", "web-b"), (vif.Mac, vif.Bridge, vif.Ip, vif.Vifname));
        Assert.NotNull(vif.Rate);
        Assert.Equal(-1, vif.Devid); // hyperd chooses it
        // No words at all is xl's default vif.
        Assert.Equal("xenbr0", DeviceVerbs.ParseVif([]).Bridge);
        Assert.Throws<FormatException>(() => DeviceVerbs.ParseVif(["mac=zz:16:3e:aa:bb:cc"]));
    }

    [Fact]
    public void Block_attach_takes_positional_and_key_value_specs()
    {
        var positional = DeviceVerbs.ParseDisk(["/srv/data.img,raw,xvdb,r"]);
        Assert.Equal(("/srv/data.img", "xvdb", 51728, true), (positional.Target, positional.Vdev, positional.VirtualDevice, positional.ReadOnly));
        var split = DeviceVerbs.ParseDisk(["format=raw", "vdev=xvdc", "access=rw", "target=/srv/c.img"]);
        Assert.Equal(("/srv/c.img", "xvdc", 51744, false), (split.Target, split.Vdev, split.VirtualDevice, split.ReadOnly));
        var cdrom = DeviceVerbs.ParseDisk(["vdev=hdc", "devtype=cdrom", "target=/srv/x.iso"]);
        Assert.True(cdrom.Cdrom);
        Assert.Throws<FormatException>(() => DeviceVerbs.ParseDisk(["/srv/a.img,raw,nonsense,w"]));
    }

    private static DeviceInfo Vif(int devid, string mac) => new()
    {
        Kind = "vif", Devid = devid, FrontendId = 3, State = 4, EventChannel = 9, Mac = mac, TxRingRef = 768, RxRingRef = 769,
        BackendPath = $"/local/domain/0/backend/vif/3/{devid}", FrontendPath = $"/local/domain/3/device/vif/{devid}",
    };

    [Fact]
    public void Network_list_prints_xls_columns()
    {
        var lines = DeviceVerbs.NetworkTable([Vif(0, "00:16:3e:00:00:01"), Vif(1, "00:16:3e:00:00:02") with { State = 1, EventChannel = -1, TxRingRef = -1, RxRingRef = -1 }]).Split('\n');
        Assert.Equal("Idx BE Mac Addr.         handle state evt-ch   tx-/rx-ring-ref BE-path", lines[0].TrimEnd());
        Assert.Equal(["0", "0", "00:16:3e:00:00:01", "0", "4", "9", "768/769", "/local/domain/0/backend/vif/3/0"], lines[1].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(["1", "0", "00:16:3e:00:00:02", "1", "1", "-1", "-1/-1", "/local/domain/0/backend/vif/3/1"], lines[2].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        // The columns line up under their headers, as xl's printf widths do.
        Assert.Equal(lines[0].IndexOf("Mac", StringComparison.Ordinal), lines[1].IndexOf("00:16", StringComparison.Ordinal));
        Assert.Equal(lines[0].IndexOf("BE-path", StringComparison.Ordinal), lines[1].IndexOf("/local", StringComparison.Ordinal));
    }

    [Fact]
    public void Block_list_prints_xls_columns_and_json_keeps_every_field()
    {
        var disk = new DeviceInfo
        {
            Kind = "vbd", Devid = 51712, FrontendId = 3, State = 4, EventChannel = 10, RingRef = 8, Vdev = "xvda", Target = "/srv/a.img", Mode = "w",
            BackendPath = "/local/domain/0/backend/vbd/3/51712", FrontendPath = "/local/domain/3/device/vbd/51712",
        };
        var lines = DeviceVerbs.BlockTable([disk]).Split('\n');
        Assert.Equal(["Vdev", "BE", "handle", "state", "evt-ch", "ring-ref", "BE-path"], lines[0].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(["51712", "0", "3", "4", "10", "8", "/local/domain/0/backend/vbd/3/51712"], lines[1].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(lines[0].IndexOf("BE-path", StringComparison.Ordinal), lines[1].IndexOf("/local", StringComparison.Ordinal));
        var json = JsonSerializer.Serialize(new List<DeviceInfo> { disk }, HyperdJson.Default.ListDeviceInfo);
        var back = JsonSerializer.Deserialize(json, HyperdJson.Default.ListDeviceInfo)!;
        Assert.Equal(disk, Assert.Single(back));
        Assert.Contains("\"ring_ref\":8", json);
    }

    [Fact]
    public void Info_prints_xls_key_value_lines()
    {
        var text = HostVerbs.InfoText(new HostInfo { Version = "1.2.3", TotalMemoryMiB = 2048, FreeMemoryMiB = 1024, Domains = 2, Hostname = "h", Cpus = 2 }, "9.9");
        var lines = text.Split('\n');
        Assert.Contains("total_memory           : 2048", lines);
        Assert.Contains("free_memory            : 1024", lines);
        Assert.Contains("nr_domains             : 2", lines);
        Assert.Contains("xenio_version          : 9.9", lines);
        Assert.All(lines, l => Assert.Equal(':', l[23]));
    }

    [Theory]
    [InlineData(0, " 0:00:00")]
    [InlineData(3725.9, " 1:02:05")]
    [InlineData(86400 + 61, "1 day,  0:01:01")]
    [InlineData(3 * 86400 + 36000, "3 days, 10:00:00")]
    public void Uptime_is_xls_format(double seconds, string expected) => Assert.Equal(expected, HostVerbs.FormatUptime(seconds));

    [Fact]
    public void Uptime_table_has_name_id_and_uptime()
    {
        var lines = HostVerbs.UptimeTable([new DomainInfo { Name = "web", Domid = 4, UptimeSeconds = 65 }]).Split('\n');
        Assert.Equal(["Name", "ID", "Uptime"], lines[0].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(["web", "4", "0:01:05"], lines[1].Split(' ', StringSplitOptions.RemoveEmptyEntries));
    }
}
