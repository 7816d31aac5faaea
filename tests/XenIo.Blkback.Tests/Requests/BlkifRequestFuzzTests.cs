using XenIo.Blkback.Requests;
using XenIo.Hypervisor.Abi;
using Xunit;

namespace XenIo.Blkback.Tests.Requests;

public class BlkifRequestFuzzTests
{
    /// <summary>
    /// 1,000,000 random ring slots (biased towards valid-looking ones so the checks past the first are
    /// reached): copy, validate, and for INDIRECT also a random segment page. Nothing throws, and every
    /// accepted request lies inside the disk with segments that obey blkif's rules.
    /// </summary>
    [Theory]
    [InlineData(512, false)]
    [InlineData(4096, true)]
    public void Million_random_slots(int sectorSize, bool readOnly)
    {
        var disk = new DiskGeometry(1 << 16, sectorSize, readOnly, DiscardEnabled: true);
        var rng = new Random(sectorSize + (readOnly ? 1 : 0));
        var slot = new byte[BlkifLimits.RequestSlotSize];
        var segs = new BlkSegment[256];
        var page = new BlkifRequestSegment[256];
        int accepted = 0;
        int errors = 0;
        for (int i = 0; i < 1_000_000; i++)
        {
            rng.NextBytes(slot);
            // Bias: a known op most of the time, small counts, sectors near or inside the disk.
            if (rng.Next(4) != 0) slot[0] = (byte)rng.Next(8);
            if (rng.Next(2) == 0) slot[1] = (byte)rng.Next(13);
            if (rng.Next(2) == 0) BitConverter.TryWriteBytes(slot.AsSpan(16), (ulong)rng.Next(1 << 17));
            if (rng.Next(2) == 0)
                for (int s = 0; s < 11; s++) { slot[28 + 8 * s] = (byte)rng.Next(9); slot[29 + 8 * s] = (byte)rng.Next(9); }
            if (slot[0] == 6 && rng.Next(2) == 0) BitConverter.TryWriteBytes(slot.AsSpan(2), (ushort)rng.Next(300));
            if (slot[0] == 5 && rng.Next(2) == 0) BitConverter.TryWriteBytes(slot.AsSpan(24), (ulong)rng.Next(1 << 17));

            var copy = BlkifRequestValidator.CopySlot(slot);
            short status;
            BlkRequest r;
            if (copy.Operation == BlkifOperation.Indirect)
            {
                status = BlkifRequestValidator.ValidateIndirectHeader(BlkifRequestValidator.AsIndirect(copy), disk, out var plan);
                if (status == BlkifStatus.Okay)
                {
                    for (int s = 0; s < plan.NrSegments; s++)
                    {
                        page[s].Gref = (uint)rng.Next();
                        page[s].FirstSect = (byte)(rng.Next(4) == 0 ? rng.Next(256) : rng.Next(8));
                        page[s].LastSect = (byte)(rng.Next(4) == 0 ? rng.Next(256) : rng.Next(8));
                    }
                    status = BlkifRequestValidator.ValidateIndirectSegments(plan, page.AsSpan(0, plan.NrSegments), disk, segs, out r);
                }
                else r = default;
            }
            else
            {
                status = BlkifRequestValidator.Validate(copy, disk, segs, out r);
            }

            Assert.True(status is BlkifStatus.Okay or BlkifStatus.Error or BlkifStatus.EOpNotSupp);
            if (status != BlkifStatus.Okay) { errors++; continue; }
            accepted++;
            Assert.True(r.Offset <= disk.SizeBytes && r.Length <= disk.SizeBytes - r.Offset);
            Assert.True(r.Offset % (ulong)sectorSize == 0 || r.Length == 0);
            if (readOnly) Assert.True(r.Kind is BlkIoKind.Read or BlkIoKind.Flush);
            ulong sum = 0;
            for (int s = 0; s < r.SegmentCount; s++)
            {
                Assert.True(segs[s].FirstSect <= segs[s].LastSect && segs[s].LastSect < 8);
                Assert.True(segs[s].PageOffset % sectorSize == 0 || sectorSize > 4096);
                sum += (ulong)segs[s].Length;
            }
            if (r.Kind != BlkIoKind.Discard) Assert.Equal(r.Length, sum);
        }
        // The bias must reach both outcomes, or the test proves nothing.
        Assert.True(accepted > 1000, $"only {accepted} accepted");
        Assert.True(errors > 1000);
    }
}
