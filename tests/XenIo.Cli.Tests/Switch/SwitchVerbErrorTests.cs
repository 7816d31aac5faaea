using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;
using XenIo.Hypervisor.Store.Transports;
using Xunit;

namespace XenIo.Cli.Tests.Switch;

/// <summary>
/// What <c>xenio switch …</c> refuses before netback ever sees it: the verbs run as <c>xenio</c> does (their
/// own process) against an in-process xenstored in a temporary run directory; no netback runs.
/// </summary>
public sealed class SwitchVerbErrorTests : IAsyncDisposable
{
    private readonly string _run = Directory.CreateTempSubdirectory("xenio-swverb-").FullName;
    private readonly Xenstored _xenstored = new();
    private readonly XenstoreSocketListener _listener;

    public SwitchVerbErrorTests() => _listener = new XenstoreSocketListener(_xenstored, XenstoreSocketListener.PathUnder(_run));

    public async ValueTask DisposeAsync()
    {
        await _listener.DisposeAsync();
        _xenstored.Dispose();
        Directory.Delete(_run, true);
    }

    private (int Code, string Out, string Err) Xenio(params string[] args) => XenioProcess.Run(_run, args);

    private void Ok(params string[] args)
    {
        var (code, _, err) = Xenio(args);
        Assert.True(code == 0, $"xenio {string.Join(' ', args)} exited {code}: {err}");
    }

    private async Task<string?> ReadAsync(string path)
    {
        await using var xs = await XenstoreClient.ConnectAsync(_listener.SocketPath);
        return await xs.TryReadAsync(path);
    }

    [Theory]
    [InlineData("access", "0")]
    [InlineData("native-untagged", "0")]
    [InlineData("access", "4095")]
    public async Task A_tag_outside_1_to_4094_is_refused_naming_the_key_the_value_and_the_range(string mode, string tag)
    {
        Ok("switch", "add-br", "br0");
        var (code, _, err) = Xenio("switch", "add-port", "br0", "t0", "--kind", "tap", "--vlan-mode", mode, "--tag", tag);
        Assert.Equal(1, code);
        Assert.Contains($"/xenio/switch/br0/port/t0/tag = '{tag}'", err);
        Assert.Contains("1-4094", err);
        Assert.DoesNotContain("Unhandled", err);
        Assert.Null(await ReadAsync("/xenio/switch/br0/port/t0/kind"));
    }

    [Fact]
    public async Task A_patch_port_whose_peer_is_itself_is_refused()
    {
        Ok("switch", "add-br", "br1");
        var (code, _, err) = Xenio("switch", "add-port", "br1", "p0", "--kind", "patch", "-o", "peer=br1/p0");
        Assert.Equal(1, code);
        Assert.Contains("/xenio/switch/br1/port/p0/option/peer = 'br1/p0'", err);
        Assert.Contains("itself", err);
        Assert.Null(await ReadAsync("/xenio/switch/br1/port/p0/kind"));
    }

    [Fact]
    public async Task A_port_name_already_on_another_bridge_is_refused_until_it_is_deleted_there()
    {
        // netback would only fail later (TUNSETIFF: device busy), so the verb says it now.
        Ok("switch", "add-br", "br0");
        Ok("switch", "add-br", "br1");
        Ok("switch", "add-port", "br0", "t0", "--kind", "tap");
        var (code, _, err) = Xenio("switch", "add-port", "br1", "t0", "--kind", "tap");
        Assert.Equal(1, code);
        Assert.Equal("xenio: port t0 is already on bridge br0; del-port br0 t0 first", err.Trim());
        Assert.Null(await ReadAsync("/xenio/switch/br1/port/t0/kind"));
        Assert.Equal("tap", await ReadAsync("/xenio/switch/br0/port/t0/kind"));

        Ok("switch", "del-port", "br0", "t0");
        Ok("switch", "add-port", "br1", "t0", "--kind", "tap");
        Assert.Equal("tap", await ReadAsync("/xenio/switch/br1/port/t0/kind"));
    }

    [Theory]
    [InlineData("kind=0")]
    [InlineData("mtu=9000")]
    [InlineData("ingress=5")]
    [InlineData("ingress/bits-per-sec=5")]
    [InlineData("sideways/bytes-per-sec=5")]
    public async Task Limit_takes_only_rate_limit_keys_and_lists_them(string limit)
    {
        Ok("switch", "add-br", "br0");
        Ok("switch", "add-port", "br0", "t0", "--kind", "tap", "--mtu", "1400");
        var (code, _, err) = Xenio("switch", "set-port", "br0", "t0", "--limit", limit);
        Assert.Equal(1, code);
        Assert.StartsWith($"xenio: --limit '{limit}' is invalid; valid: ", err);
        foreach (var key in new[] { "ingress/bytes-per-sec", "egress/packets-per-sec", "ingress/bytes-burst", "egress/packets-burst" })
            Assert.Contains(key, err);
        Assert.Equal("tap", await ReadAsync("/xenio/switch/br0/port/t0/kind"));
        Assert.Equal("1400", await ReadAsync("/xenio/switch/br0/port/t0/mtu"));
    }

    [Fact]
    public async Task A_burst_without_its_rate_is_refused_naming_the_key_the_value_and_the_fix()
    {
        Ok("switch", "add-br", "br0");
        var (code, _, err) = Xenio("switch", "add-port", "br0", "t0", "--kind", "tap", "--limit", "ingress/bytes-burst=5000");
        Assert.Equal(1, code);
        Assert.Contains("ingress/bytes-burst", err);
        Assert.Contains("5000", err);
        Assert.Contains("--limit ingress/bytes-per-sec=N", err);
        Assert.DoesNotContain("Unhandled", err);
        Assert.Null(await ReadAsync("/xenio/switch/br0/port/t0/kind"));

        // With its rate it is taken; removing the rate while the burst stays is refused the same way.
        Ok("switch", "add-port", "br0", "t0", "--kind", "tap", "--limit", "ingress/bytes-per-sec=1000", "--limit", "ingress/bytes-burst=5000");
        Assert.Equal("5000", await ReadAsync("/xenio/switch/br0/port/t0/ingress/bytes-burst"));
        (code, _, err) = Xenio("switch", "set-port", "br0", "t0", "--limit", "ingress/bytes-per-sec=0");
        Assert.Equal(1, code);
        Assert.Contains("ingress/bytes-burst", err);
        Assert.Equal("1000", await ReadAsync("/xenio/switch/br0/port/t0/ingress/bytes-per-sec"));
        Ok("switch", "set-port", "br0", "t0", "--limit", "ingress/bytes-per-sec=0", "--limit", "ingress/bytes-burst=0");
        Assert.Null(await ReadAsync("/xenio/switch/br0/port/t0/ingress/bytes-burst"));
    }

    [Fact]
    public void The_help_gives_the_tag_range_netback_takes()
    {
        var (code, help, _) = Xenio("switch", "add-port", "--help");
        Assert.Equal(0, code);
        Assert.Contains("(1-4094)", help);
        Assert.DoesNotContain("0-4094", help);
    }
}
