using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Grants;
using XenIo.Hypervisor.Hypercalls;
using XenIo.Tests;
using Xunit;

namespace XenIo.Hypervisor.Tests.Hypercalls;

public class CoreHostProcessTests
{
    /// <summary>The core services in their own process: this test takes a domain's descriptors from it and plays guest and dom0.</summary>
    [Fact]
    public void A_domain_created_by_a_hyperd_process_is_usable_through_its_descriptors()
    {
        string run = Path.Combine(Path.GetTempPath(), $"xenio-corehost-{Guid.NewGuid():N}"[..30]);
        using var hyperd = Peer.Start("core-host", run, "1024");
        try
        {
            string socket = CoreTestHost.ReadLineStartingWith(hyperd, "ready ")[6..];
            string handoff = Path.Combine(run, "d3.handoff");
            hyperd.StandardInput.WriteLine($"create 3 128 4 {handoff}");
            hyperd.StandardInput.Flush();
            Assert.Equal("ok", hyperd.StandardOutput.ReadLine());
            hyperd.StandardInput.WriteLine("create 4 2048 4 /nonexistent");
            hyperd.StandardInput.Flush();
            Assert.StartsWith("error", hyperd.StandardOutput.ReadLine());

            GuestDescriptors descriptors = default;
            var deadline = Environment.TickCount64 + 30_000;
            while (true)
            {
                try
                {
                    descriptors = DomainHandoff.Receive(handoff);
                    break;
                }
                catch (System.Net.Sockets.SocketException) when (Environment.TickCount64 < deadline)
                {
                    Thread.Sleep(20); // the hand-off socket is not listening yet
                }
            }
            using var guest = GuestDomain.Attach(descriptors);
            Assert.Equal(3, guest.Domid);
            uint gref = guest.GrantTable.GrantAccess(0, guest.Pages.Allocate(), readOnly: true);
            using var dom0 = HypercallClient.Connect(socket);
            using var foreign = dom0.MapForeign(3);
            Assert.Equal(GrantStatus.Okay, foreign.Map(gref, readOnly: true, out var mapping));
            Assert.False(guest.GrantTable.EndAccess(gref));
            Assert.Equal(GrantStatus.Okay, foreign.Unmap(mapping));
            Assert.True(guest.GrantTable.EndAccess(gref));

            using var port = guest.Hypercalls.AllocUnbound(DomainIds.Dom0);
            using var back = dom0.BindInterdomain(3, port.Port);
            Assert.True(back.Wait(5000));
            back.Notify();
            Assert.True(port.Wait(5000));
        }
        finally
        {
            hyperd.StandardInput.Close();
            CoreTestHost.WaitForExit(hyperd, 30_000);
            try { Directory.Delete(run, recursive: true); } catch (IOException) { }
        }
        Assert.Equal(0, hyperd.ExitCode);
    }
}
