using System.Buffers.Binary;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Hypercalls;
using XenIo.Hypervisor.Interop;
using Xunit;

namespace XenIo.Hypervisor.Tests.Hypercalls;

/// <summary>Hostile bytes at hyperd's hypercall server: it answers or disconnects, and keeps serving everyone else.</summary>
public sealed class HypercallFuzzTests : IDisposable
{
    private readonly CoreTestHost _t = new();

    public void Dispose() => _t.Dispose();

    [Fact]
    public void Random_messages_from_dom0_clients_never_take_the_server_down()
    {
        var rng = new Random(4242);
        using var witness = HypercallClient.Connect(_t.Host.HypercallSocketPath);
        _t.Host.CreateDomain(1, "target", frames: 64, grantFrames: 4);
        for (int c = 0; c < 40; c++)
        {
            using var client = HypercallClient.Connect(_t.Host.HypercallSocketPath);
            for (int m = 0; m < 50; m++)
            {
                var message = new byte[rng.Next(0, 80)];
                rng.NextBytes(message);
                if (message.Length >= HypercallHeader.Size && rng.Next(3) > 0)
                {
                    // Mostly well framed, so the payload checks are reached too.
                    message[0] = HypercallHeader.CurrentVersion;
                    message[1] = (byte)rng.Next(1, 13);
                    BinaryPrimitives.WriteUInt16LittleEndian(message.AsSpan(2), (ushort)(message.Length - HypercallHeader.Size));
                    BinaryPrimitives.WriteUInt32LittleEndian(message.AsSpan(12), 0);
                }
                if (client.SendRaw(message) < 0) break;
            }
        }
        Assert.Equal(DomainIds.Dom0, witness.DomainInfo().Domid);
        using var foreign = witness.MapForeign(1);
        Assert.Equal(64u, foreign.Memory.FrameCount);
    }

    [Fact]
    public void Well_formed_but_hostile_guest_requests_get_errors_not_crashes()
    {
        var rng = new Random(777);
        var domain = _t.Host.CreateDomain(2, "hostile", frames: 128, grantFrames: 4);
        int memoryFd = Libc.fcntl((int)domain.Memory.Handle.DangerousGetHandle(), Libc.F_DUPFD_CLOEXEC, 0);
        using var end = domain.TakeGuestEnd();
        using var guest = GuestDomain.Attach(memoryFd, Libc.fcntl((int)end.DangerousGetHandle(), Libc.F_DUPFD_CLOEXEC, 0));
        var channels = new List<IDisposable>();
        int errors = 0;
        for (int i = 0; i < 3000; i++)
        {
            try
            {
                switch (rng.Next(7))
                {
                    case 0: channels.Add(guest.Hypercalls.AllocUnbound((ushort)rng.Next(0, 0x8000))); break;
                    case 1: channels.Add(guest.Hypercalls.BindInterdomain((ushort)rng.Next(0, 4), (uint)rng.Next(0, 2000))); break;
                    case 2: guest.Hypercalls.Close((uint)rng.Next(0, 2000)); break;
                    case 3: guest.Hypercalls.Status((uint)rng.Next(0, 2000)); break;
                    case 4: channels.Add(guest.Hypercalls.ReopenEndpoint((uint)rng.Next(0, 100))); break;
                    case 5:
                    {
                        var frames = Enumerable.Range(0, rng.Next(1, 600)).Select(_ => (uint)rng.Next(0, 300)).ToArray();
                        if (rng.Next(2) == 0) guest.Hypercalls.DecreaseReservation(frames); else guest.Hypercalls.PopulatePhysmap(frames);
                        break;
                    }
                    default: Assert.Throws<HypercallException>(() => guest.Hypercalls.MapForeign((ushort)rng.Next(0, 4))); break;
                }
            }
            catch (HypercallException)
            {
                errors++;
            }
        }
        Assert.True(errors > 0);
        // Still connected and accounted within its own size.
        Assert.Equal(2, guest.Hypercalls.DomainInfo().Domid);
        Assert.InRange(domain.Reservation.PopulatedPages, 4, 128);
        foreach (var c in channels) c.Dispose();
    }
}
