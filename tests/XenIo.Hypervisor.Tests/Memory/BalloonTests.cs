using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Interop;
using XenIo.Hypervisor.Tests.Hypercalls;
using Xunit;

namespace XenIo.Hypervisor.Tests.Memory;

public class BalloonTests
{
    /// <summary>
    /// A guest gives 64 pages back through the hypercall interface and takes them again: the pool's
    /// accounting and the memfd's allocated blocks (fstat st_blocks) follow, and the pages come back zeroed.
    /// </summary>
    [Fact]
    public void Decrease_then_populate_moves_pages_between_the_guest_and_the_pool()
    {
        using var t = new CoreTestHost(budgetPages: 1000);
        var domain = t.Host.CreateDomain(3, "balloon", frames: 256, grantFrames: 4);
        int memoryFd = Libc.fcntl((int)domain.Memory.Handle.DangerousGetHandle(), Libc.F_DUPFD_CLOEXEC, 0);
        using var end = domain.TakeGuestEnd();
        int hypercallFd = Libc.fcntl((int)end.DangerousGetHandle(), Libc.F_DUPFD_CLOEXEC, 0);
        using var guest = GuestDomain.Attach(memoryFd, hypercallFd);
        Assert.Equal(3, guest.Domid);
        Assert.Equal(256, t.Host.Pool.UsedPages);

        // Touch every page so the kernel really allocates them.
        for (uint f = 0; f < 256; f++) guest.Memory.Page(f).Fill(0xEE);
        long allocated = guest.Memory.AllocatedBytes;
        Assert.True(allocated >= 256 * 4096L, $"allocated {allocated}");

        var frames = Enumerable.Range(100, 64).Select(i => (uint)i).ToArray();
        Assert.Equal(64, guest.Hypercalls.DecreaseReservation(frames));
        Assert.Equal(256 - 64, t.Host.Pool.UsedPages);
        Assert.Equal(256 - 64, domain.Reservation.PopulatedPages);
        Assert.Equal(allocated - 64 * 4096L, guest.Memory.AllocatedBytes);
        // Not read back here: on shmem even a read fault through a shared mapping allocates the page again.

        // Released frames cannot be released twice; grant table frames cannot be released at all.
        Assert.Equal(0, guest.Hypercalls.DecreaseReservation([100]));
        Assert.Equal(0, guest.Hypercalls.DecreaseReservation([0, 1]));
        Assert.Equal(0, guest.Hypercalls.DecreaseReservation([256]));

        // A guest that touches a page it gave back gets it allocated again behind the pool's back;
        // hyperd's reclaim punches it out again.
        Assert.Equal(0, domain.Reservation.ReclaimTouchedFrames());
        guest.Memory.Page(120)[0] = 1;
        guest.Memory.Page(121)[0] = 1;
        Assert.Equal(allocated - 62 * 4096L, guest.Memory.AllocatedBytes);
        Assert.Equal(2, domain.Reservation.ReclaimTouchedFrames());
        Assert.Equal(allocated - 64 * 4096L, guest.Memory.AllocatedBytes);

        Assert.Equal(64, guest.Hypercalls.PopulatePhysmap(frames));
        Assert.Equal(256, t.Host.Pool.UsedPages);
        Assert.Equal(allocated, guest.Memory.AllocatedBytes);
        Assert.All(frames, f => Assert.True(guest.Memory.Page(f).IndexOfAnyExcept((byte)0) < 0));
        Assert.Equal(0, guest.Hypercalls.PopulatePhysmap([100]));
    }

    [Fact]
    public void Populate_stops_when_the_pool_is_exhausted_and_creation_fails_cleanly()
    {
        using var t = new CoreTestHost(budgetPages: 300);
        var domain = t.Host.CreateDomain(4, "tight", frames: 256, grantFrames: 4);
        Assert.Null(t.Host.TryCreateDomain(5, "too-big", frames: 64, grantFrames: 4));
        Assert.Equal(44, t.Host.Pool.FreePages);

        var frames = Enumerable.Range(10, 100).Select(i => (uint)i).ToArray();
        Assert.Equal(100, domain.Reservation.DecreaseReservation(frames));
        Assert.NotNull(t.Host.TryCreateDomain(5, "fits-now", frames: 64, grantFrames: 4));
        Assert.Equal(80, domain.Reservation.PopulatePhysmap(frames));
        Assert.Equal(0, t.Host.Pool.FreePages);
        t.Host.DestroyDomain(5);
        Assert.Equal(20, domain.Reservation.PopulatePhysmap(frames.AsSpan(80)));
        Assert.Equal(256, domain.Reservation.PopulatedPages);
    }
}
