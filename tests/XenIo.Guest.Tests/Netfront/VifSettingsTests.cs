using System.Net;
using XenIo.Guest.Netfront;
using Xunit;

namespace XenIo.Guest.Tests.Netfront;

public sealed class VifSettingsTests
{
    [Theory]
    [InlineData("00:16:3e:00:00:01", true)]
    [InlineData("00:16:3E:aB:cd:EF", true)]
    [InlineData("01:16:3e:00:00:01", false)]
    [InlineData("00:00:00:00:00:00", false)]
    [InlineData("00-16-3e-00-00-01", false)]
    [InlineData("00:16:3e:00:00", false)]
    [InlineData("00:16:3e:00:00:0g", false)]
    [InlineData(null, false)]
    public void Mac(string? text, bool valid) => Assert.Equal(valid, VifSettings.TryParseMac(text, out _));

    [Theory]
    [InlineData(null, true, 1500)]
    [InlineData("9000", true, 9000)]
    [InlineData("67", false, 0)]
    [InlineData("65536", false, 0)]
    [InlineData("-1", false, 0)]
    public void Mtu(string? text, bool valid, int mtu)
    {
        Assert.Equal(valid, VifSettings.TryParseMtu(text, out var parsed));
        if (valid) Assert.Equal(mtu, parsed);
    }

    [Fact]
    public void Ip_keys_as_libxl_writes_them()
    {
        Assert.True(VifSettings.TryParseAddresses("198.18.0.1/24 2001:db8::1/64 198.18.1.1", out var a, out _));
        Assert.Equal(["198.18.0.1/24", "2001:db8::1/64", "198.18.1.1/24"], a.Select(x => x.ToString()));
        Assert.True(VifSettings.TryParseAddresses(null, out a, out _));
        Assert.Empty(a);
        Assert.False(VifSettings.TryParseAddresses("198.18.0.1/33", out _, out _));
        Assert.False(VifSettings.TryParseAddresses("example.com", out _, out _));
        Assert.False(VifSettings.TryParseAddresses("fe80::1%eth0/64", out _, out _));
    }

    [Fact]
    public void A_gateway_applies_only_inside_a_subnet_of_the_vif()
    {
        Assert.True(VifSettings.TryParseAddresses("198.18.0.2/24", out var a, out _));
        var settings = new VifSettings([0, 0x16, 0x3e, 0, 0, 2], 1500, a, IPAddress.Parse("198.18.0.254"));
        Assert.True(settings.OnLink(IPAddress.Parse("198.18.0.254")));
        Assert.False(settings.OnLink(IPAddress.Parse("198.18.1.254")));
        Assert.False(settings.OnLink(IPAddress.Parse("2001:db8::1")));
        Assert.True(VifSettings.TryParseGateway(" 198.18.0.254 ", out var g));
        Assert.Equal(IPAddress.Parse("198.18.0.254"), g);
        Assert.False(VifSettings.TryParseGateway("198.18.0.254/24", out _));
    }
}
