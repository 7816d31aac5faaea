using XenIo.Guest.Blkfront.Ring;
using XenIo.Guest.Blkfront.Workload;
using XenIo.Hypervisor.Abi;
using Xunit;
using Xunit.Abstractions;

namespace XenIo.Blkback.Tests.Ring;

/// <summary>blkfront against the blkback daemon over real rings, grants and event channels (blkback in its own process).</summary>
public sealed class BlkRingTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Writes_flushes_and_reads_over_the_ring_read_back_what_was_acknowledged()
    {
        await using var rig = await BlkRig.StartAsync();
        var image = rig.CreateImage("web.img", 64);
        var d = await rig.CreateDomainAsync("web", 96, BlkRig.Disk(image));
        var guest = rig.AttachGuest(d);
        await rig.StartBlkbackAsync();
        var front = await rig.ConnectAsync(guest, options: new BlkfrontOptions { Queues = 2, RingPageOrder = 1 });
        Assert.Equal(64L << 20, front.SizeBytes);
        Assert.Equal(2, front.QueueCount);
        Assert.Equal(64, front.RingSize);
        // 4 grant frames (2048 refs): half of them for 128 slots leaves plain 11-page requests, at most 44 KiB.
        Assert.Equal(11 * 4096, front.MaxRequestBytes);

        // 4 KiB writes at depth 16 (plain requests) and 256 KiB ones (INDIRECT), with flushes.
        foreach (var bs in new[] { 4096, 11 * 4096 })
        {
            var w = new BlkWorkload(front, new BlkWorkloadSpec
            {
                Mode = BlkWorkloadMode.ReadWrite, BlockBytes = bs, QueueDepth = 16, TotalOps = 1500, FlushEvery = 50,
                OffsetBytes = bs == 4096 ? 0 : 22L << 20, RegionBytes = 16L << 20, Verify = true, Seed = bs,
            });
            var r = await w.RunAsync();
            if (r.Errors != 0) output.WriteLine(rig.BlkbackLog);
            Assert.Equal(0, r.Errors);
            Assert.Equal(0, r.VerifyFailures);
            Assert.True(r.Flushes > 0);
            Assert.Equal(0, await w.VerifyAllAsync());
        }

        // Through the IBlockDevice path too, and the bytes are in the image file.
        var data = new byte[3 * 4096 + 512];
        Random.Shared.NextBytes(data);
        await front.WriteAsync(40000, data);
        await front.FlushAsync();
        var back = new byte[data.Length];
        await front.ReadAsync(40000, back);
        Assert.Equal(data, back);
        Assert.Equal(data, RawFile.Read(image, 40000L * 512, data.Length));

        // A discard punches a hole: the range reads back as zeros.
        Assert.True(front.SupportsDiscard);
        await front.DiscardAsync(40000 / 8 * 8, 16);
        await front.ReadAsync(40000 / 8 * 8, back.AsMemory(0, 16 * 512));
        Assert.All(back.AsSpan(0, 16 * 512).ToArray(), b => Assert.Equal(0, b));
    }
}
