using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Transports;
using XenIo.Tests;
using XenIo.TestPeer.Store;
using Xunit;

namespace XenIo.Hypervisor.Tests.Store;

/// <summary>A guest in another OS process on a shared ring page: memory ordering and identity across processes.</summary>
public class CrossProcessRingTests
{
    [Fact]
    public async Task AGuestProcessTalksOverItsSharedRingPage()
    {
        await using var h = new StoreHarness();
        var dom0 = await h.Dom0Async();
        await dom0.WriteAsync("/local/domain/0/private", "dom0's");
        var dir = h.Directory;
        var pagePath = Path.Combine(dir, "ring.page");
        await File.WriteAllBytesAsync(pagePath, new byte[SharedPage.Size]);
        var daemonBell = Path.Combine(dir, "daemon.bell");
        var guestBell = Path.Combine(dir, "guest.bell");
        var page = new SharedPage(pagePath);
        var doorbell = new DatagramDoorbell(daemonBell, guestBell);
        var mapper = new InProcessDomainMapper();
        h.Daemon.Mapper = mapper;
        mapper.Offer(9, 0x99, 19, new XenstoreDomainRing(page.Memory, doorbell, page));
        await dom0.IntroduceAsync(9, 0x99, 19);

        using var peer = Peer.Start("xenstore-guest", pagePath, guestBell, daemonBell, "/local/domain/0/private");
        var stdout = peer.StandardOutput.ReadToEndAsync();
        var stderr = peer.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await peer.WaitForExitAsync(cts.Token);
        Assert.True(peer.ExitCode == 0, await stderr);
        Assert.Contains("ok /local/domain/0", await stdout);
        Assert.Equal("value-199", await dom0.ReadAsync("/local/domain/9/data/k9"));
        Assert.Equal([new XenstorePermission(9, XenstoreAccess.None)], await dom0.GetPermsAsync("/local/domain/9/data/k9"));
        await dom0.ReleaseAsync(9);
    }
}
