using System.Diagnostics;
using System.Globalization;
using XenIo.Guest.Blkfront.Ring;
using XenIo.Guest.Blkfront.Workload;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Domains.Hyperd;
using XenIo.Tests;
using Xunit;
using Xunit.Abstractions;

namespace XenIo.Blkback.Tests.Ring;

/// <summary>
/// The hostile-frontend acceptance: a separate process holding only a domU's descriptors sends
/// 1,000,000 requests blkback must refuse, each answered with an error, while another guest's disk keeps
/// being served and verified; then it breaks its ring, which disconnects its vbd only.
/// </summary>
public sealed class BlkHostileTests(ITestOutputHelper output)
{
    private const int HostileRequests = 1_000_000;

    [Fact]
    public async Task A_million_hostile_requests_are_each_refused_while_another_guest_is_served()
    {
        await using var rig = await BlkRig.StartAsync();
        var webImage = rig.CreateImage("web.img", 32);
        var evilImage = rig.CreateImage("evil.img", 32);
        var web = await rig.CreateDomainAsync("web", 64, BlkRig.Disk(webImage));
        var evil = await rig.CreateDomainAsync("evil", 16, BlkRig.Disk(evilImage));
        var webGuest = rig.AttachGuest(web);
        await rig.StartBlkbackAsync();
        var front = await rig.ConnectAsync(webGuest, options: new BlkfrontOptions { RingPageOrder = 0 });

        await WithHostileFrontendAsync(rig, evil, HostileRequests, async peer =>
        {
            var verdict = peer.StandardOutput.ReadLineAsync();
            long rounds = 0, ops = 0;
            var w = new BlkWorkload(front, new BlkWorkloadSpec
            {
                Mode = BlkWorkloadMode.ReadWrite, QueueDepth = 8, TotalOps = 400, FlushEvery = 50, RegionBytes = 16L << 20, Verify = true,
            });
            while (!verdict.IsCompleted)
            {
                var r = await w.RunAsync();
                Assert.Equal(0, r.Errors);
                Assert.Equal(0, r.VerifyFailures);
                Assert.Equal(0, await w.VerifyAllAsync());
                rounds++;
                ops += r.Ops;
            }
            Assert.Equal($"ok {HostileRequests}", await verdict);
            Assert.True(rounds > 0);
            output.WriteLine($"web served {ops} verified requests in {rounds} rounds meanwhile");
            Assert.Equal(((int)XenbusState.Connected).ToString(CultureInfo.InvariantCulture), await rig.Dom0.ReadAsync($"{BlkRig.BackendPath(evil.Domid)}/state"));

            // An impossible producer index breaks the ring: that vbd goes to Closing with an error, web carries on.
            await BreakRingAsync(rig, evil, peer);
            var last = await w.RunAsync();
            Assert.Equal(0, last.Errors + last.VerifyFailures);
            Assert.Equal(0, await w.VerifyAllAsync());
            Assert.Equal(((int)XenbusState.Connected).ToString(CultureInfo.InvariantCulture), await rig.Dom0.ReadAsync($"{BlkRig.BackendPath(web.Domid)}/state"));
        });
    }

    /// <summary>
    /// With one I/O worker per ring, the worker that finds the ring broken is the only one (none parked to
    /// wake): the vbd still closes with the queue's "ring broken", not an internal failure.
    /// </summary>
    [Fact]
    public async Task A_broken_ring_served_by_one_worker_closes_its_vbd_as_broken()
    {
        await using var rig = await BlkRig.StartAsync();
        var evil = await rig.CreateDomainAsync("evil", 16, BlkRig.Disk(rig.CreateImage("evil.img", 32)));
        await rig.StartBlkbackAsync(ioWorkersPerQueue: 1);
        await WithHostileFrontendAsync(rig, evil, 10, async peer =>
        {
            Assert.Equal("ok 10", await peer.StandardOutput.ReadLineAsync());
            await BreakRingAsync(rig, evil, peer);
        });
    }

    /// <summary>
    /// Hands <paramref name="evil"/> to a hostile frontend process that will send <paramref name="requests"/>
    /// requests blkback must refuse, connects its ring and starts it, runs <paramref name="body"/>, then
    /// ends it (blkback still running). On a failure the peer's and blkback's logs go to the test output.
    /// </summary>
    private async Task WithHostileFrontendAsync(BlkRig rig, DomainRecord evil, int requests, Func<Process, Task> body)
    {
        var socket = Path.Combine(rig.Directory, "evil.handoff");
        var handoff = DomainHandoff.HandOffAsync(evil.Hosted, socket);
        while (!File.Exists(socket)) await Task.Delay(10);
        using var peer = Peer.Start("blk-hostile", socket, ((32L << 20) / 512).ToString(CultureInfo.InvariantCulture), requests.ToString(CultureInfo.InvariantCulture));
        try
        {
            await handoff.WaitAsync(TimeSpan.FromSeconds(30));
            var ring = (await peer.StandardOutput.ReadLineAsync())!.Split(' ');
            Assert.Equal("ring", ring[0]);
            var fe = BlkRig.FrontendPath(evil.Domid);
            await rig.Dom0.WriteAsync($"{fe}/ring-ref", ring[1]);
            await rig.Dom0.WriteAsync($"{fe}/event-channel", ring[2]);
            await rig.Dom0.WriteAsync($"{fe}/protocol", "x86_64-abi");
            await rig.Dom0.WriteAsync($"{fe}/state", ((int)XenbusState.Initialised).ToString(CultureInfo.InvariantCulture));
            Assert.True(await rig.WaitBackendStateAsync(evil.Domid, XenbusState.Connected), "the hostile frontend's vbd did not connect");
            await peer.StandardInput.WriteLineAsync("go");
            await peer.StandardInput.FlushAsync();
            await body(peer);
            Assert.False(rig.Blkback!.HasExited);
            await peer.StandardInput.WriteLineAsync("end");
            await peer.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(0, peer.ExitCode);
        }
        catch
        {
            if (!peer.HasExited) peer.Kill();
            output.WriteLine(await peer.StandardError.ReadToEndAsync());
            output.WriteLine(rig.BlkbackLog);
            throw;
        }
    }

    /// <summary>Has the hostile frontend write an impossible producer index: its vbd goes to Closing with the queue's "ring broken" as its error.</summary>
    private static async Task BreakRingAsync(BlkRig rig, DomainRecord evil, Process peer)
    {
        await peer.StandardInput.WriteLineAsync("break");
        await peer.StandardInput.FlushAsync();
        Assert.Equal("broken", await peer.StandardOutput.ReadLineAsync());
        Assert.True(await rig.WaitBackendStateAsync(evil.Domid, XenbusState.Closing), "the broken ring's vbd was not closed");
        // The queue's own words (the vbd prefixes every ring failure with "ring broken"), not a worker's crash.
        var error = await rig.Dom0.ReadAsync($"{BlkRig.BackendPath(evil.Domid)}/error");
        Assert.Contains("queue 0: ring broken:", error);
        Assert.DoesNotContain("failed", error);
    }
}
