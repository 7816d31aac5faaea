using XenIo.Hypervisor.Domains;
using XenIo.Tests;
using Xunit;

namespace XenIo.Hypervisor.Tests.Hypercalls;

public class CrossProcessRingTests
{
    /// <summary>
    /// A guest process and a backend process that share nothing but what hyperd hands them (the
    /// guest's memory and hypercall connection; the backend's dom0 connection and map_foreign) set
    /// up a netif tx ring, bind an event channel through the hypercall protocol, and move a million
    /// requests' data by grant copy, every byte checked by the backend and every grant ended by the guest.
    /// </summary>
    [Fact]
    public async Task Guest_and_backend_processes_exchange_a_million_requests_by_grant_copy()
    {
        const int Count = 1_000_000;
        using var t = new CoreTestHost();
        var domain = t.Host.CreateDomain(1, "netfront", frames: 512);
        string handoff = t.HandoffPath("d1");
        var handing = DomainHandoff.HandOffAsync(domain, handoff);
        using var guest = Peer.Start("core-netfront", handoff, Count.ToString());
        await handing.WaitAsync(TimeSpan.FromSeconds(60));
        string ring = CoreTestHost.ReadLineStartingWith(guest, "ring ");

        using var backend = Peer.Start("core-netback", t.Host.HypercallSocketPath, "1", Count.ToString());
        backend.StandardInput.WriteLine(ring);
        backend.StandardInput.Flush();

        CoreTestHost.WaitForExit(backend);
        CoreTestHost.WaitForExit(guest);
        string backendOut = backend.StandardOutput.ReadToEnd(), backendErr = backend.StandardError.ReadToEnd();
        string guestOut = guest.StandardOutput.ReadToEnd(), guestErr = guest.StandardError.ReadToEnd();
        Assert.True(backend.ExitCode == 0, $"backend: {backendErr}");
        Assert.True(guest.ExitCode == 0, $"guest: {guestErr}");
        Assert.Contains($"verified {Count} ", backendOut);
        Assert.Contains($"done {Count}", guestOut);
    }
}
