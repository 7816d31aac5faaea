using XenIo.Hypervisor.Domains.Spawn;
using Xunit;

namespace XenIo.Guest.Tests;

public class AgentOptionsTests
{
    [Fact]
    public void ParsesHyperdsCommandLine()
    {
        var o = AgentOptions.Parse(["--config-fd", "5", "--notify-fd", "6", "--console-fd", "7"]);
        Assert.Equal(5, o.ConfigFd);
        Assert.Equal(6, o.NotifyFd);
        Assert.Equal(7, o.ConsoleFd);
    }

    [Theory]
    [InlineData()]
    [InlineData("--config-fd", "5", "--config", "/x")]
    [InlineData("--config-fd", "2")]
    [InlineData("--config-fd", "-4")]
    [InlineData("--config-fd")]
    [InlineData("--config-fd", "5", "--bogus")]
    public void RejectsBadCommandLines(params string[] args) =>
        Assert.Throws<ArgumentException>(() => AgentOptions.Parse(args));

    [Fact]
    public void ConfigRoundTripsThroughSourceGeneratedJson()
    {
        var config = new AgentConfig
        {
            Name = "web", Domid = 3, Init = ["/bin/sh", "-c", "echo hi"], HiddenPaths = ["/run/xenio"],
            ConsoleFd = AgentFds.Console, StopTimeoutMs = 500, Userns = true,
        };
        var json = System.Text.Json.JsonSerializer.Serialize(config, AgentConfigJson.Default.AgentConfig);
        Assert.Contains("\"hidden_paths\":[\"/run/xenio\"]", json);
        Assert.DoesNotContain("memory_fd", json);
        var back = System.Text.Json.JsonSerializer.Deserialize(json, AgentConfigJson.Default.AgentConfig)!;
        Assert.Equal(config.Init, back.Init);
        Assert.Equal(config with { Init = back.Init, HiddenPaths = back.HiddenPaths, Environment = back.Environment }, back);
    }

    [Theory]
    [InlineData("/run/xenio", true)]
    [InlineData("/", false)]
    [InlineData("//", false)]
    [InlineData("relative/dir", false)]
    public void HiddenPathsMustBeAbsoluteAndNotRoot(string path, bool ok) =>
        Assert.Equal(ok, Setup.GuestMounts.IsHideable(path));
}
