using System.Text.Json;
using XenIo.Cli.Config;
using XenIo.Hypervisor.Domains;
using Xunit;

namespace XenIo.Cli.Tests.Config;

public class DomainConfigReaderTests
{
    private const string Web = """
        # An xl.cfg domain
        name = "web"
        memory = 256
        maxmem = 0x200   # hex, as xl allows
        vcpus = 2
        vif = [ 'mac=00:16:3e:00:00:01,bridge=xenbr0,ip=198.18.0.1/24',
                'bridge=xenbr1,rate=10Mb/s@20ms', ]
        disk = [ '/var/lib/xenio/web.img,raw,xvda,rw' ]; on_crash = "preserve"
        on_reboot = 'destroy'
        init = ["/usr/bin/iperf3", "-s"]
        gateway = "198.18.0.254"
        isolation = "userns"
        """;

    [Fact]
    public void Reads_every_supported_key()
    {
        var (c, warnings) = DomainConfigReader.Parse(Web, "web.cfg");
        Assert.Empty(warnings);
        Assert.Equal("web", c.Name);
        Assert.Equal(256, c.MemoryMiB);
        Assert.Equal(512, c.MaxMemMiB);
        Assert.Equal(2, c.Vcpus);
        Assert.Equal(2, c.Vifs.Count);
        Assert.Equal(0, c.Vifs[0].Devid);
        Assert.Equal(1, c.Vifs[1].Devid);
        Assert.Equal("xenbr1", c.Vifs[1].Bridge);
        Assert.Equal(25_000UL, c.Vifs[1].Rate!.BytesPerInterval);
        Assert.Single(c.Disks);
        Assert.Equal(LifecycleAction.Preserve, c.OnCrash);
        Assert.Equal(LifecycleAction.Destroy, c.OnReboot);
        Assert.Equal(LifecycleAction.Destroy, c.OnPoweroff);
        Assert.Equal(["/usr/bin/iperf3", "-s"], c.Init);
        Assert.Equal("198.18.0.254", c.Gateway);
        Assert.Equal(GuestIsolation.Userns, c.Isolation);
    }

    [Fact]
    public void Command_line_overrides_win_and_bare_words_are_strings()
    {
        var (c, _) = DomainConfigReader.Parse(Web, "web.cfg", ["name=web2", "memory=300", "vcpus=1"]);
        Assert.Equal("web2", c.Name);
        Assert.Equal(300, c.MemoryMiB);
        Assert.Equal(1, c.Vcpus);
    }

    [Fact]
    public void Append_extends_a_list()
    {
        var (c, _) = DomainConfigReader.Parse("name='a'\nvif=['bridge=x']\nvif+=['bridge=y']\n", "a.cfg");
        Assert.Equal(["x", "y"], c.Vifs.Select(v => v.Bridge));
    }

    [Fact]
    public void Defaults_when_only_a_name_is_given()
    {
        var (c, _) = DomainConfigReader.Parse("name = 'tiny'", "t.cfg");
        Assert.Equal(128, c.MemoryMiB);
        Assert.Equal(128, c.MaxMemMiB);
        Assert.Equal(1, c.Vcpus);
        Assert.Equal(["/bin/sh"], c.Init);
        Assert.Equal(LifecycleAction.Restart, c.OnReboot);
        Assert.Equal(GuestIsolation.Host, c.Isolation);
    }

    [Fact]
    public void Unknown_and_ineffective_keys_are_warned_about_with_their_place()
    {
        var (_, warnings) = DomainConfigReader.Parse("name='a'\nkernel='/boot/vmlinuz'\n  colour = 'red'\n", "a.cfg");
        Assert.Equal(2, warnings.Count);
        Assert.Equal("a.cfg:2:1: warning: 'kernel' has no effect on a XenIo guest; ignored", warnings[0].ToString());
        Assert.Equal(new SourcePosition("a.cfg", 3, 3), warnings[1].Position);
        Assert.Contains("unknown setting 'colour'", warnings[1].Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("memory = 128", "bad.cfg:1:1", "no name")]
    [InlineData("name = 'a'\nmemory = 'lots'", "bad.cfg:2:10", "bad memory 'lots'")]
    [InlineData("name = 'a'\nmemory = 12abc", "bad.cfg:2:10", "is not a number")]
    [InlineData("name = 'a'\nvcpus = 0", "bad.cfg:2:9", "bad vcpus 0")]
    [InlineData("name = 'a'\nmemory = 256\nmaxmem = 128", "bad.cfg:3:10", "maxmem 128 is below memory 256")]
    [InlineData("name = 'a b'", "bad.cfg:1:8", "bad name 'a b'")]
    [InlineData("name = 'a'\non_crash = 'explode'", "bad.cfg:2:12", "expected destroy, restart, preserve or rename-restart")]
    [InlineData("name = 'a'\nvif = [ 'bridge=x',\n  'mac=zz' ]", "bad.cfg:3:3", "bad mac 'zz'")]
    [InlineData("name = 'a'\ndisk = [ '/a.img,raw,xvda,rw', '/b.img,raw,xvda,rw' ]", "bad.cfg:2:8", "disk vdev 51712 is used twice")]
    [InlineData("name = 'a'\ndisk = [ 7 ]", "bad.cfg:2:10", "must be a quoted string")]
    [InlineData("name = 'a\nmemory = 1", "bad.cfg:1:8", "string not closed")]
    [InlineData("name = 'a'\nvif = [ 'x'", "bad.cfg:2:7", "no closing ']'")]
    [InlineData("name 'a'", "bad.cfg:1:6", "expected '=' after 'name'")]
    [InlineData("name = 'a' 'b'", "bad.cfg:1:12", "expected the end of the line")]
    [InlineData("9name = 'a'", "bad.cfg:1:1", "expected a setting name")]
    [InlineData("name = 'a'\nvif = [['x']]", "bad.cfg:2:8", "cannot be nested")]
    [InlineData("name = 'a\\q'", "bad.cfg:1:10", "unknown escape")]
    [InlineData("name = 'a'\ninit = 'sh -c x'", "bad.cfg:2:8", "absolute program path")]
    [InlineData("name = 'a'\nisolation = 'vm'", "bad.cfg:2:13", "bad isolation 'vm'")]
    [InlineData("name = 'a'\ngateway = '198.18.0'", "bad.cfg:2:11", "bad gateway")]
    public void Malformed_files_are_rejected_with_file_line_column(string text, string where, string message)
    {
        var e = Assert.Throws<XlConfigException>(() => DomainConfigReader.Parse(text, "bad.cfg"));
        Assert.Equal(where, e.Position.ToString());
        Assert.Contains(message, e.Reason, StringComparison.Ordinal);
        Assert.StartsWith(where + ": ", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Escapes_in_strings()
    {
        var s = XlConfigParser.Parse("a = \"x\\ty\\x41\\101\\\"\"\nb = 'it\\'s'", "e.cfg");
        Assert.Equal("x\tyAA\"", ((XlString)s[0].Value).Value);
        Assert.Equal("it's", ((XlString)s[1].Value).Value);
    }

    [Fact]
    public void A_missing_file_is_named()
    {
        var e = Assert.Throws<XlConfigException>(() => DomainConfigReader.Read("/nonexistent/dir/x.cfg"));
        Assert.Contains("/nonexistent/dir/x.cfg", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Json_contract_round_trips()
    {
        var (c, _) = DomainConfigReader.Parse(Web, "web.cfg");
        var json = JsonSerializer.Serialize(c, DomainConfigJson.Default.DomainConfig);
        Assert.Contains("\"on_crash\": \"Preserve\"", json, StringComparison.Ordinal);
        var back = JsonSerializer.Deserialize(json, DomainConfigJson.Default.DomainConfig)!;
        Assert.Equal(c.Name, back.Name);
        Assert.Equal(c.Vifs[1].Rate, back.Vifs[1].Rate);
        Assert.Equal(c.Disks[0], back.Disks[0]);
        Assert.Equal(c.Init, back.Init);
    }

    [Fact]
    public void The_examples_folder_parses_without_warnings()
    {
        var dir = Path.Combine(AppContext.BaseDirectory, "examples");
        var files = Directory.Exists(dir) ? Directory.GetFiles(dir, "*.cfg") : [];
        Assert.NotEmpty(files);
        foreach (var f in files)
        {
            var (c, warnings) = DomainConfigReader.Read(f);
            Assert.Empty(warnings);
            Assert.NotEmpty(c.Vifs);
        }
    }
}
