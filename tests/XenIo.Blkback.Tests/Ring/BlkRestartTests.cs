using XenIo.Guest.Blkfront.Ring;
using XenIo.Guest.Blkfront.Workload;
using Xunit;
using Xunit.Abstractions;

namespace XenIo.Blkback.Tests.Ring;

/// <summary>The data-integrity acceptance: blkback SIGKILLed mid-stream and restarted; blkfront reconnects and resubmits.</summary>
public sealed class BlkRestartTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Blkback_killed_mid_stream_restarts_and_every_acknowledged_write_reads_back()
    {
        await using var rig = await BlkRig.StartAsync();
        var image = rig.CreateImage("db.img", 32);
        var d = await rig.CreateDomainAsync("db", 64, BlkRig.Disk(image));
        var guest = rig.AttachGuest(d);
        await rig.StartBlkbackAsync();
        var front = await rig.ConnectAsync(guest, options: new BlkfrontOptions { RingPageOrder = 0 });

        var w = new BlkWorkload(front, new BlkWorkloadSpec
        {
            Mode = BlkWorkloadMode.ReadWrite, BlockBytes = 8192, QueueDepth = 16, TotalOps = 40_000, FlushEvery = 32,
            RegionBytes = 8L << 20, Verify = true, Seed = 42,
        });
        var run = w.RunAsync();
        try
        {
            for (int kill = 0; kill < 2; kill++)
            {
                long before = w.CompletedOps;
                // Mid-stream: the workload has made progress since the start or the last restart.
                var deadline = DateTime.UtcNow.AddSeconds(60);
                while (w.CompletedOps < before + 2500 && !run.IsCompleted && DateTime.UtcNow < deadline) await Task.Delay(10);
                Assert.False(run.IsCompleted, "the workload ended before blkback could be killed");
                rig.KillBlkback();
                await rig.StartBlkbackAsync();
            }
            var result = await run.WaitAsync(TimeSpan.FromSeconds(120));
            Assert.InRange(result.Ops, 40_000, 40_000 + 16); // each of the 16 workers may finish the request it had started
            Assert.Equal(0, result.Errors);
            Assert.Equal(0, result.VerifyFailures);
            Assert.True(result.Flushes > 0);
            Assert.Equal(2, front.Reconnects);
            Assert.Equal(0, await w.VerifyAllAsync());
        }
        catch
        {
            output.WriteLine(rig.BlkbackLog);
            throw;
        }
    }
}
