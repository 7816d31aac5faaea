using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using XenIo.Hypervisor.Daemons;
using XenIo.Net.Tap;
using XenIo.Netback.Api;
using XenIo.VSwitch.Management;
using Xunit;

namespace XenIo.Integration.Tests.Netback;

/// <summary>
/// Vifs and the bridge their <c>bridge</c> key names, with the switch's reconciler and API as netback runs
/// them: a deleted bridge takes its vifs off it (not attached, as xl reports a vif whose bridge is gone),
/// and a bridge of that name coming back takes them again.
/// </summary>
[Collection("netback-vifs")]
public sealed class VifBridgeTests
{
    private static SwitchConfig WithBridge(string name) =>
        new(new Dictionary<string, BridgeConfig> { [name] = new BridgeConfig(name) });

    [Fact]
    public async Task Deleting_a_bridge_detaches_its_vifs_and_adding_it_back_attaches_them_again()
    {
        using var loop = new EpollLoop("vif-bridge-test");
        using var reconciler = new SwitchReconciler(new PortFactory(loop));
        Assert.Empty(reconciler.Apply(WithBridge("br1")));
        await using var h = await VifHarness.StartAsync(findBridge: reconciler.FindBridge);
        var (ra, _) = await h.CreateGuestAsync("a", "00:16:3e:00:02:0a", bridge: "br1");
        var (rb, _) = await h.CreateGuestAsync("b", "00:16:3e:00:02:0b", bridge: "br1");
        var api = new NetbackApi(reconciler, () => [], _ => { }, () => h.Vifs.Vifs);
        await using var server = new UnixHttpServer(Path.Combine(h.Dir, "netback.sock"), api.HandleAsync, _ => { });
        int[] domids = [ra.Domid, rb.Domid];

        await WaitAttachedAsync(server.SocketPath, domids, true, h);
        var old = reconciler.FindBridge("br1")!;
        Assert.Equal(2, old.Ports.Count);

        // del-br br1: the vifs keep their bridge key but switch on no bridge, the old one least of all.
        Assert.Empty(reconciler.Apply(SwitchConfig.Empty));
        await WaitAttachedAsync(server.SocketPath, domids, false, h);
        Assert.Empty(old.Ports);
        foreach (var domid in domids) Assert.Null(h.Port(domid).Bridge);

        // add-br br1: a new bridge of that name takes them.
        Assert.Empty(reconciler.Apply(WithBridge("br1")));
        await WaitAttachedAsync(server.SocketPath, domids, true, h);
        var again = reconciler.FindBridge("br1")!;
        Assert.NotSame(old, again);
        Assert.Equal(2, again.Ports.Count);
        Assert.Empty(old.Ports);
        foreach (var domid in domids) Assert.Same(again, h.Port(domid).Bridge);
    }

    /// <summary>Polls GET /vifs until every listed domain's vif reports <paramref name="attached"/> (with bridge br1 either way).</summary>
    private static async Task WaitAttachedAsync(string socket, int[] domids, bool attached, VifHarness h)
    {
        var deadline = DateTime.UtcNow + VifHarness.Limit;
        while (true)
        {
            using var doc = JsonDocument.Parse(await NetbackHttp.GetAsync(socket, "/vifs"));
            var vifs = doc.RootElement.GetProperty("vifs").EnumerateArray().Where(v => domids.Contains(v.GetProperty("domid").GetInt32())).ToArray();
            if (vifs.Length == domids.Length && vifs.All(v => v.GetProperty("attached").GetBoolean() == attached))
            {
                Assert.All(vifs, v => Assert.Equal("br1", v.GetProperty("bridge").GetString()));
                return;
            }
            Assert.True(DateTime.UtcNow < deadline, $"vifs never reported attached={attached}: {doc.RootElement}\nlog:\n{string.Join('\n', h.Log)}");
            await Task.Delay(20);
        }
    }
}
