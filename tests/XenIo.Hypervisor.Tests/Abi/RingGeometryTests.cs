using XenIo.Hypervisor.Abi;
using Xunit;

namespace XenIo.Hypervisor.Tests.Abi;

public class RingGeometryTests
{
    [Theory]
    [InlineData(12, 1, 256)]   // netif tx (union of 12-byte request and 4-byte response)
    [InlineData(8, 1, 256)]    // netif rx
    [InlineData(112, 1, 32)]   // blkif
    [InlineData(112, 2, 64)]
    [InlineData(112, 4, 128)]
    [InlineData(112, 8, 256)]
    [InlineData(112, 16, 512)] // blkif, max-ring-page-order 4
    public void Slots_match_ring_h(int entrySize, int pages, int expected) =>
        Assert.Equal(expected, RingGeometry.Slots(entrySize, pages));

    [Theory]
    [InlineData(3)]
    [InlineData(0)]
    [InlineData(32)]
    public void Slots_refuse_pages_that_are_not_an_order_0_to_4(int pages) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => RingGeometry.Slots(12, pages));
}
