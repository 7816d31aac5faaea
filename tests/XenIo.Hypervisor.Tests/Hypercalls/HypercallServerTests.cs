using System.Net.Sockets;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Grants;
using XenIo.Hypervisor.Hypercalls;
using XenIo.Hypervisor.Interop;
using Xunit;

namespace XenIo.Hypervisor.Tests.Hypercalls;

public sealed class HypercallServerTests : IDisposable
{
    private readonly CoreTestHost _t = new();

    public void Dispose() => _t.Dispose();

    private GuestDomain Guest(ushort domid)
    {
        var domain = _t.Host.CreateDomain(domid, $"d{domid}", frames: 64, grantFrames: 4);
        int memoryFd = Libc.fcntl((int)domain.Memory.Handle.DangerousGetHandle(), Libc.F_DUPFD_CLOEXEC, 0);
        using var end = domain.TakeGuestEnd();
        return GuestDomain.Attach(memoryFd, Libc.fcntl((int)end.DangerousGetHandle(), Libc.F_DUPFD_CLOEXEC, 0));
    }

    [Fact]
    public void The_dom0_socket_is_private()
    {
        if (!OperatingSystem.IsWindows())
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(_t.Host.HypercallSocketPath));
    }

    [Theory]
    [InlineData("01 01 0400 01000000 00000000 00000000 0000")]          // length field lies
    [InlineData("09 01 0400 01000000 00000000 00000000 0000 0000")]     // bad version
    [InlineData("01 01 0500 01000000 00000000 00000000 0000 0000 00")]  // alloc_unbound payload one byte long
    [InlineData("01 0A 0800 01000000 00000000 00000000 0100 0400 00000000")] // GrantMapped with an unknown flag
    [InlineData("01 06 0400 01000000 00000000 00000000 00000000")]      // decrease with zero frames
    public void A_malformed_message_closes_that_connection_only(string hex)
    {
        using var good = HypercallClient.Connect(_t.Host.HypercallSocketPath);
        using var bad = HypercallClient.Connect(_t.Host.HypercallSocketPath);
        using var guest = Guest(1);
        Assert.Equal(DomainIds.Dom0, bad.DomainInfo().Domid);
        var message = Convert.FromHexString(hex.Replace(" ", ""));
        Assert.Equal(message.Length, (int)bad.SendRaw(message));
        Assert.ThrowsAny<IOException>(() => bad.DomainInfo());
        Assert.Equal(DomainIds.Dom0, good.DomainInfo().Domid);
        Assert.Equal(new DomainDescription(1, 64, 4), guest.Hypercalls.DomainInfo());
    }

    [Fact]
    public void A_guest_cannot_use_dom0_operations()
    {
        using var guest = Guest(1);
        using var other = Guest(2);
        Assert.Equal(1, Assert.Throws<HypercallException>(() => guest.Hypercalls.MapForeign(2)).Errno);
        // A grant-map note from a guest is a protocol violation: its connection is closed.
        Assert.True(((IGrantMapRecorder)guest.Hypercalls).Mapped(2, 8, true));
        Assert.ThrowsAny<IOException>(() => guest.Hypercalls.DomainInfo());
        Assert.Equal(2, other.Hypercalls.DomainInfo().Domid);
    }

    [Fact]
    public void Map_foreign_hands_dom0_the_guests_memory()
    {
        using var guest = Guest(3);
        using var dom0 = HypercallClient.Connect(_t.Host.HypercallSocketPath);
        using var foreign = dom0.MapForeign(3);
        Assert.Equal(64u, foreign.Memory.FrameCount);
        Assert.Equal(4u, foreign.GrantFrames);
        guest.Memory.Page(10)[7] = 0x99;
        Assert.Equal(0x99, foreign.Memory.Page(10)[7]);
        Assert.Equal(3, Assert.Throws<HypercallException>(() => dom0.MapForeign(42)).Errno);
    }

    [Fact]
    public async Task Shutdown_is_reported_with_its_reason()
    {
        using var guest = Guest(4);
        var seen = new TaskCompletionSource<(ushort, ShutdownReason)>();
        _t.Host.DomainShutdown += (d, r) => seen.TrySetResult((d, r));
        guest.Hypercalls.Shutdown(ShutdownReason.Reboot);
        Assert.Equal(((ushort)4, ShutdownReason.Reboot), await seen.Task.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(ShutdownReason.Reboot, _t.Host.Find(4)!.ShutdownReason);
    }

    [Fact]
    public async Task Guest_connection_closing_is_noticed()
    {
        var guest = Guest(5);
        var gone = new TaskCompletionSource<ushort>();
        _t.Host.GuestDisconnected += d => gone.TrySetResult(d);
        guest.Dispose();
        Assert.Equal(5, await gone.Task.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.False(_t.Host.Find(5)!.GuestConnected);
    }

    [Fact]
    public void Ledger_releases_only_what_no_other_client_still_maps()
    {
        using var guest = Guest(6);
        uint gref = guest.GrantTable.GrantAccess(0, 20, readOnly: false);
        using var a = HypercallClient.Connect(_t.Host.HypercallSocketPath);
        var b = HypercallClient.Connect(_t.Host.HypercallSocketPath);
        using var fa = a.MapForeign(6);
        var fb = b.MapForeign(6);
        Assert.Equal(GrantStatus.Okay, fa.Map(gref, readOnly: true, out _));
        Assert.Equal(GrantStatus.Okay, fb.Map(gref, readOnly: false, out _));
        Assert.Equal(GrantFlags.Reading | GrantFlags.Writing, guest.GrantTable.Read(gref).Flags & (GrantFlags.Reading | GrantFlags.Writing));
        // Map notes are sent without a reply; a request answered on the same connection means hyperd has
        // taken the note before it. Without this, b's close could be processed before a's note.
        a.Status(1);
        b.Status(1);
        b.Dispose(); // the writer's connection goes (its mapping is leaked, as in a crash)
        var deadline = Environment.TickCount64 + 10_000;
        while ((guest.GrantTable.Read(gref).Flags & GrantFlags.Writing) != 0 && Environment.TickCount64 < deadline) Thread.Sleep(5);
        Assert.Equal(GrantFlags.Reading, guest.GrantTable.Read(gref).Flags & (GrantFlags.Reading | GrantFlags.Writing));
        Assert.False(guest.GrantTable.EndAccess(gref));
    }

    [Fact]
    public void Destroying_a_domain_closes_its_connection_and_returns_its_pages()
    {
        using var guest = Guest(7);
        using var dom0 = HypercallClient.Connect(_t.Host.HypercallSocketPath);
        using var port = guest.Hypercalls.AllocUnbound(0);
        using var back = dom0.BindInterdomain(7, port.Port);
        long used = _t.Host.Pool.UsedPages;
        _t.Host.DestroyDomain(7);
        Assert.Equal(used - 64, _t.Host.Pool.UsedPages);
        Assert.Null(_t.Host.Find(7));
        Assert.ThrowsAny<IOException>(() => guest.Hypercalls.DomainInfo());
        Assert.Equal(3, Assert.Throws<HypercallException>(() => dom0.MapForeign(7)).Errno);
        // As in Xen, the surviving end returns to unbound (for the dead domain); its peer's end is gone.
        Assert.Equal((EventChannelStatus.Unbound, (ushort)7, 0u), dom0.Status(back.Port));
        // The guest memory itself lives on in the processes that still map it.
        guest.Memory.Page(10)[0] = 1;
    }

    [Fact]
    public void A_backend_that_cannot_tell_hyperd_does_not_map()
    {
        using var guest = Guest(8);
        uint gref = guest.GrantTable.GrantAccess(0, 20, readOnly: false);
        using var dom0 = HypercallClient.Connect(_t.Host.HypercallSocketPath);
        using var foreign = dom0.MapForeign(8);
        dom0.SendRaw([0xFF]); // malformed: hyperd closes this connection
        Assert.ThrowsAny<IOException>(() => dom0.DomainInfo());
        Assert.Equal(GrantStatus.GeneralError, foreign.Map(gref, readOnly: false, out _));
        Assert.True(guest.GrantTable.EndAccess(gref));
    }
}
