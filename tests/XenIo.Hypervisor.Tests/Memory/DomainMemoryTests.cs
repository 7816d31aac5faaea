using Microsoft.Win32.SafeHandles;
using XenIo.Hypervisor.Interop;
using XenIo.Hypervisor.Memory;
using Xunit;

namespace XenIo.Hypervisor.Tests.Memory;

public class DomainMemoryTests
{
    [Fact]
    public void Memory_is_a_sealed_memfd_shared_between_mappings()
    {
        using var memory = DomainMemory.Create("seal-test", 16);
        int fd = (int)memory.Handle.DangerousGetHandle();
        int seals = Libc.fcntl(fd, Libc.F_GET_SEALS, 0);
        Assert.Equal(Libc.F_SEAL_SHRINK | Libc.F_SEAL_GROW | Libc.F_SEAL_SEAL, seals);
        Assert.NotEqual(0, Libc.ftruncate(fd, 4096));
        Assert.NotEqual(0, Libc.ftruncate(fd, 32 * 4096));
        Assert.True(File.ReadAllText($"/proc/self/fdinfo/{fd}").Length > 0);
        Assert.StartsWith("/memfd:seal-test", new FileInfo($"/proc/self/fd/{fd}").LinkTarget);

        using var second = DomainMemory.Map(Libc.fcntl(fd, Libc.F_DUPFD_CLOEXEC, 0));
        Assert.Equal(16u, second.FrameCount);
        memory.Page(15)[4095] = 0x42;
        Assert.Equal(0x42, second.Page(15)[4095]);
    }

    [Fact]
    public void Frame_numbers_are_bounds_checked()
    {
        using var memory = DomainMemory.Create("bounds", 4);
        Assert.True(memory.TryGetPage(3, out var page));
        Assert.Equal(4096, page.Length);
        Assert.False(memory.TryGetPage(4, out _));
        Assert.False(memory.TryGetPage(uint.MaxValue, out _));
        Assert.Throws<ArgumentOutOfRangeException>(() => memory.Page(4).Length);
        Assert.False(memory.Contains(4));
    }

    [Fact]
    public void An_unsealed_memfd_is_refused()
    {
        int fd = Libc.memfd_create("unsealed", Libc.MFD_CLOEXEC | Libc.MFD_ALLOW_SEALING);
        Assert.True(fd >= 0);
        Assert.Equal(0, Libc.ftruncate(fd, 4096));
        Assert.Throws<InvalidDataException>(() => DomainMemory.Map(new SafeFileHandle(fd, ownsHandle: true)));
    }

    [Fact]
    public void Page_pool_accounts_every_domain_against_one_budget()
    {
        var pool = new HostPagePool(100);
        using var a = DomainMemory.Create("a", 60);
        using var b = DomainMemory.Create("b", 50);
        using var ra = DomainReservation.TryCreate(a, pool, 1);
        Assert.NotNull(ra);
        Assert.Equal(60, pool.UsedPages);
        Assert.Null(DomainReservation.TryCreate(b, pool, 1));
        Assert.Equal(60, pool.UsedPages);
        ra!.Dispose();
        Assert.Equal(0, pool.UsedPages);
        using var rb = DomainReservation.TryCreate(b, pool, 1);
        Assert.NotNull(rb);
        Assert.Equal(50, pool.FreePages);
    }

    [Fact]
    public void Guest_page_allocator_hands_out_frames_above_the_grant_table()
    {
        var pages = new GuestPageAllocator(32, 40);
        var got = new List<uint>();
        while (pages.TryAllocate(out uint f)) got.Add(f);
        Assert.Equal(Enumerable.Range(32, 8).Select(i => (uint)i), got);
        pages.Free(35);
        Assert.Equal(35u, pages.Allocate());
        pages.Free(36);
        Assert.Throws<InvalidOperationException>(() => pages.Free(36));
        Assert.Throws<ArgumentOutOfRangeException>(() => pages.Free(31));
    }
}
