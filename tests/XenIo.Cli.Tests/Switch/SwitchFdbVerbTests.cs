using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;
using XenIo.Hypervisor.Store.Transports;
using Xunit;

namespace XenIo.Cli.Tests.Switch;

/// <summary>
/// <c>xenio switch fdb-add|fdb-del</c> against an in-process xenstored with no netback running: what they
/// write to <c>/xenio/switch/BR/fdb-static</c> (netback applies it when it starts) and what they refuse.
/// </summary>
public sealed class SwitchFdbVerbTests : IAsyncDisposable
{
    private readonly string _run = Directory.CreateTempSubdirectory("xenio-swfdb-").FullName;
    private readonly Xenstored _xenstored = new();
    private readonly XenstoreSocketListener _listener;

    public SwitchFdbVerbTests()
    {
        _listener = new XenstoreSocketListener(_xenstored, XenstoreSocketListener.PathUnder(_run));
        Ok("switch", "add-br", "br0");
        Ok("switch", "add-br", "br1");
        Ok("switch", "add-port", "br0", "t0", "--kind", "tap");
        Ok("switch", "add-port", "br0", "a10", "--kind", "tap", "--vlan-mode", "access", "--tag", "10");
        Ok("switch", "add-port", "br1", "t1", "--kind", "tap");
    }

    public async ValueTask DisposeAsync()
    {
        await _listener.DisposeAsync();
        _xenstored.Dispose();
        Directory.Delete(_run, true);
    }

    private (int Code, string Out, string Err) Xenio(params string[] args) => XenioProcess.Run(_run, args);

    private string Ok(params string[] args)
    {
        var (code, _, err) = Xenio(args);
        Assert.True(code == 0, $"xenio {string.Join(' ', args)} exited {code}: {err}");
        return err;
    }

    private async Task<SortedDictionary<string, string>> StaticKeysAsync(string bridge)
    {
        await using var xs = await XenstoreClient.ConnectAsync(_listener.SocketPath);
        return await XenIo.Netback.Switch.SwitchStore.ReadTreeAsync(xs, $"/xenio/switch/{bridge}/fdb-static");
    }

    [Fact]
    public async Task Add_writes_the_entry_on_the_VLAN_the_port_puts_untagged_frames_on_and_del_removes_it()
    {
        // netback is down: the entry is configured, and applied when it starts.
        Assert.Contains("netback is not running; the entry applies when it starts", Ok("switch", "fdb-add", "br0", "02:00:00:00:00:01", "t0"));
        Ok("switch", "fdb-add", "br0", "02:00:00:00:00:0A", "a10");
        Ok("switch", "fdb-add", "br0", "02-00-00-00-00-02", "t0", "--vlan", "20");
        Assert.Equal(new Dictionary<string, string>
        {
            ["0"] = "", ["0/02-00-00-00-00-01"] = "t0",
            ["10"] = "", ["10/02-00-00-00-00-0a"] = "a10",
            ["20"] = "", ["20/02-00-00-00-00-02"] = "t0",
        }, await StaticKeysAsync("br0"));

        // Adding it again moves it; deleting the last of a VLAN takes the VLAN's node too.
        Ok("switch", "fdb-add", "br0", "02:00:00:00:00:01", "a10", "--vlan", "10");
        Ok("switch", "fdb-del", "br0", "02:00:00:00:00:02");
        Ok("switch", "fdb-del", "br0", "02:00:00:00:00:0a");
        Assert.Equal(new Dictionary<string, string> { ["0"] = "", ["0/02-00-00-00-00-01"] = "t0", ["10"] = "", ["10/02-00-00-00-00-01"] = "a10" },
            await StaticKeysAsync("br0"));
        Ok("switch", "fdb-del", "br0", "02:00:00:00:00:01", "--vlan", "0");
        Assert.Equal(new Dictionary<string, string> { ["10"] = "", ["10/02-00-00-00-00-01"] = "a10" }, await StaticKeysAsync("br0"));
    }

    [Fact]
    public async Task An_entry_written_by_hand_in_another_spelling_is_replaced_or_deleted_not_left_beside()
    {
        await using (var xs = await XenstoreClient.ConnectAsync(_listener.SocketPath))
            await xs.WriteAsync("/xenio/switch/br0/fdb-static/00/02-00-00-00-00-0A", "a10");
        Ok("switch", "fdb-add", "br0", "02:00:00:00:00:0a", "t0");
        Assert.Equal(new Dictionary<string, string> { ["0"] = "", ["0/02-00-00-00-00-0a"] = "t0" }, await StaticKeysAsync("br0"));

        await using (var xs = await XenstoreClient.ConnectAsync(_listener.SocketPath))
            await xs.WriteAsync("/xenio/switch/br0/fdb-static/10/02-00-00-00-00-0B", "a10");
        Ok("switch", "fdb-del", "br0", "02:00:00:00:00:0b");
        Assert.Equal(new Dictionary<string, string> { ["0"] = "", ["0/02-00-00-00-00-0a"] = "t0" }, await StaticKeysAsync("br0"));
    }

    public static TheoryData<string[], string> Refusals => new()
    {
        { ["fdb-add", "nosuch", "02:00:00:00:00:01", "t0"], "xenio: no bridge nosuch (add it with `xenio switch add-br nosuch`)" },
        { ["fdb-add", "br0", "02:00:00:00:01", "t0"], "xenio: MAC '02:00:00:00:01' is invalid; valid: six pairs of hex digits separated by ':', e.g. 02:00:00:00:00:01" },
        { ["fdb-add", "br0", "02:00:00:00:00:0g", "t0"], "xenio: MAC '02:00:00:00:00:0g' is invalid; valid: six pairs of hex digits separated by ':', e.g. 02:00:00:00:00:01" },
        { ["fdb-add", "br0", "01:00:5e:00:00:01", "t0"], "xenio: MAC '01:00:5e:00:00:01': 01:00:5e:00:00:01 is a group (multicast or broadcast) address, which the switch floods; valid: a unicast MAC (the low bit of the first byte clear)" },
        { ["fdb-add", "br0", "ff:ff:ff:ff:ff:ff", "t0"], "xenio: MAC 'ff:ff:ff:ff:ff:ff': ff:ff:ff:ff:ff:ff is a group (multicast or broadcast) address, which the switch floods; valid: a unicast MAC (the low bit of the first byte clear)" },
        { ["fdb-add", "br0", "00:00:00:00:00:00", "t0"], "xenio: MAC '00:00:00:00:00:00': 00:00:00:00:00:00 is no station's address; valid: a unicast MAC such as 02:00:00:00:00:01" },
        { ["fdb-add", "br0", "02:00:00:00:00:01", "t0", "--vlan", "4095"], "xenio: --vlan 4095 is invalid; valid: 0-4094 (0: untagged frames on a trunk port; an access port's frames are on its tag)" },
        { ["fdb-add", "br0", "02:00:00:00:00:01", "t0", "--vlan", "-1"], "xenio: --vlan -1 is invalid; valid: 0-4094 (0: untagged frames on a trunk port; an access port's frames are on its tag)" },
        { ["fdb-add", "br0", "02:00:00:00:00:01", "t1"], "xenio: bridge br0 has no port t1; its ports: a10, t0 (netback is not running, so its vifs are not known)" },
        { ["fdb-add", "br0", "02:00:00:00:00:01", "bad/name"], "xenio: port name 'bad/name' is invalid; valid: 1-15 characters of A-Za-z0-9_.-" },
        { ["fdb-add", "br0", "02:00:00:00:00:01", "a10", "--vlan", "0"], "xenio: port a10 does not carry VLAN 0 (an access port of VLAN 10); give --vlan one it carries" },
        { ["fdb-del", "nosuch", "02:00:00:00:00:01"], "xenio: no bridge nosuch" },
        { ["fdb-del", "br0", "02:00:00:00:00:09"], "xenio: bridge br0 has no static entry for 02:00:00:00:00:09; see `xenio switch fdb br0`" },
        { ["fdb-del", "br0", "02:00:00:00:00:05", "--vlan", "30"], "xenio: bridge br0 has no static entry for 02:00:00:00:00:05 on VLAN 30; see `xenio switch fdb br0`" },
        { ["fdb-del", "br0", "02:00:00:00:00:05"], "xenio: 02:00:00:00:00:05 is static on VLANs 0, 20 of bridge br0; say which with --vlan" },
        { ["fdb-del", "br0", "05:00"], "xenio: MAC '05:00' is invalid; valid: six pairs of hex digits separated by ':', e.g. 02:00:00:00:00:01" },
    };

    [Theory]
    [MemberData(nameof(Refusals))]
    public async Task Refused_with_exit_1_naming_the_value_and_the_fix_and_nothing_changes(string[] args, string message)
    {
        Ok("switch", "fdb-add", "br0", "02:00:00:00:00:05", "t0");
        Ok("switch", "fdb-add", "br0", "02:00:00:00:00:05", "t0", "--vlan", "20");
        var before = await StaticKeysAsync("br0");
        var (code, _, err) = Xenio(["switch", .. args]);
        Assert.Equal(1, code);
        Assert.Equal(message, err.Trim());
        Assert.Equal(before, await StaticKeysAsync("br0"));
        Assert.Empty(await StaticKeysAsync("br1"));
    }
}
