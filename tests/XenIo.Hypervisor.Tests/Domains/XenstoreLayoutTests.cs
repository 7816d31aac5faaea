using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Domains.Toolstack;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;
using XenIo.Hypervisor.Tests.Store;
using Xunit;

namespace XenIo.Hypervisor.Tests.Domains;

/// <summary>
/// A domain laid out as libxl does it, checked through the access each party gets: the guest over
/// its own ring, another guest, and dom0.
/// </summary>
public class XenstoreLayoutTests
{
    private const ushort Web = 7;
    private static readonly Guid Uuid = Guid.Parse("6c2b1f0e-3d1e-4b8e-9a53-2f4a1c9e8d10");

    private static IReadOnlyList<XenstoreStep> WebDomain()
    {
        var steps = new List<XenstoreStep>();
        steps.AddRange(XenstoreLayout.Domain(Web, "web", Uuid, targetKiB: 65536, staticMaxKiB: 131072, vcpus: 2, storeRingRef: 33, storePort: 1));
        steps.AddRange(XenstoreLayout.Console(Web, ringRef: 34, port: 2, name: "web"));
        steps.AddRange(XenstoreLayout.Vif(Web, new VifConfig { Devid = 0, Ip = "198.18.0.1/24", Rate = new VifRate(25000, 20000), Vlan = 10 },
            "00:16:3e:00:00:01", "vif7.0"));
        steps.AddRange(XenstoreLayout.Vbd(Web, new DiskConfig { Target = "/images/web.img", Vdev = "xvda", VirtualDevice = 51712 }));
        return steps;
    }

    [Fact]
    public async Task Keys_and_permissions_are_libxls()
    {
        await using var h = new StoreHarness();
        var dom0 = await h.Dom0Async();
        // Introduced first, as hyperd does: xenstored hands /local/domain/7 to the guest, and the
        // layout then gives it back to dom0 with libxl's read-only permissions.
        await h.GuestAsync(dom0, Web);
        await XenstoreLayoutWriter.ApplyAsync(dom0, WebDomain());

        Assert.Equal([new(0, XenstoreAccess.None), new(Web, XenstoreAccess.Read)], await dom0.GetPermsAsync("/local/domain/7"));
        Assert.Equal([new(Web, XenstoreAccess.None)], await dom0.GetPermsAsync("/local/domain/7/control/shutdown"));
        Assert.Equal("web", await dom0.ReadAsync("/local/domain/7/name"));
        Assert.Equal("7", await dom0.ReadAsync("/local/domain/7/domid"));
        Assert.Equal("65536", await dom0.ReadAsync("/local/domain/7/memory/target"));
        Assert.Equal("online", await dom0.ReadAsync("/local/domain/7/cpu/1/availability"));
        Assert.Equal("33", await dom0.ReadAsync("/local/domain/7/store/ring-ref"));
        Assert.Equal("/vm/" + Uuid.ToString("D"), await dom0.ReadAsync("/local/domain/7/vm"));

        // Split devices: frontend owned by the guest and readable by dom0, backend the other way round, linked both ways.
        Assert.Equal([new(Web, XenstoreAccess.None), new(0, XenstoreAccess.Read)], await dom0.GetPermsAsync("/local/domain/7/device/vif/0"));
        Assert.Equal([new(0, XenstoreAccess.None), new(Web, XenstoreAccess.Read)], await dom0.GetPermsAsync("/local/domain/0/backend/vif/7/0"));
        Assert.Equal("/local/domain/0/backend/vif/7/0", await dom0.ReadAsync("/local/domain/7/device/vif/0/backend"));
        Assert.Equal("/local/domain/7/device/vif/0", await dom0.ReadAsync("/local/domain/0/backend/vif/7/0/frontend"));
        Assert.Equal("25000,20000", await dom0.ReadAsync("/local/domain/0/backend/vif/7/0/rate"));
        Assert.Equal("10", await dom0.ReadAsync("/local/domain/0/backend/vif/7/0/vlan"));
        Assert.Equal("1", await dom0.ReadAsync("/local/domain/0/backend/vif/7/0/state"));
        Assert.Equal("1", await dom0.ReadAsync("/local/domain/7/device/vif/0/state"));
        Assert.Equal("51712", await dom0.ReadAsync("/local/domain/7/device/vbd/51712/virtual-device"));
        Assert.Equal("w", await dom0.ReadAsync("/local/domain/0/backend/vbd/7/51712/mode"));
        Assert.Equal("/local/domain/7/console", await dom0.ReadAsync("/local/domain/0/backend/console/7/0/frontend"));
        Assert.Equal("1048576", await dom0.ReadAsync("/local/domain/7/console/limit"));
        Assert.Equal("/local/domain/7/device/vif/0", await dom0.ReadAsync("/libxl/7/device/vif/0/frontend"));
    }

    [Fact]
    public async Task The_guest_reads_what_it_should_and_writes_only_its_own_nodes()
    {
        await using var h = new StoreHarness();
        var dom0 = await h.Dom0Async();
        var guest = await h.GuestAsync(dom0, Web);
        var other = await h.GuestAsync(dom0, 8);
        await XenstoreLayoutWriter.ApplyAsync(dom0, WebDomain());

        Assert.Equal("web", await guest.ReadAsync("name"));
        Assert.Equal(XsError.EACCES, await StoreHarness.ErrorOf(() => guest.WriteAsync("name", "evil")));
        Assert.Equal(XsError.EACCES, await StoreHarness.ErrorOf(() => guest.WriteAsync("memory/target", "999999999")));
        Assert.Equal(XsError.EACCES, await StoreHarness.ErrorOf(() => guest.WriteAsync("newkey", "x")));
        await guest.WriteAsync("control/shutdown", "");
        await guest.WriteAsync("data/ip", "198.18.0.1");

        // Its frontends are its own; the backends only readable.
        await guest.WriteAsync("device/vif/0/state", "4");
        Assert.Equal("00:16:3e:00:00:01", await guest.ReadAsync("/local/domain/0/backend/vif/7/0/mac"));
        Assert.Equal(XsError.EACCES, await StoreHarness.ErrorOf(() => guest.WriteAsync("/local/domain/0/backend/vif/7/0/state", "4")));
        Assert.Equal(XsError.EACCES, await StoreHarness.ErrorOf(() => guest.WriteAsync("/local/domain/0/backend/vif/7/0/bridge", "other")));

        // The console's ring keys are the toolstack's: readable, not writable.
        Assert.Equal("34", await guest.ReadAsync("console/ring-ref"));
        Assert.Equal(XsError.EACCES, await StoreHarness.ErrorOf(() => guest.WriteAsync("console/ring-ref", "1")));
        await guest.WriteAsync("console/state", "4");

        // Another guest sees none of it.
        Assert.Equal(XsError.EACCES, await StoreHarness.ErrorOf(() => other.ReadAsync("/local/domain/7/name")));
        Assert.Equal(XsError.EACCES, await StoreHarness.ErrorOf(() => other.ReadAsync("/local/domain/0/backend/vif/7/0/mac")));
        Assert.Equal(XsError.EACCES, await StoreHarness.ErrorOf(() => other.ReadAsync("/local/domain/7/device/vif/0/state")));
        // libxl's bookkeeping is dom0's alone.
        Assert.Equal(XsError.EACCES, await StoreHarness.ErrorOf(() => guest.ReadAsync("/libxl/7/device/vif/0/frontend")));
    }

    [Fact]
    public async Task Reapplying_detaching_and_removing_leave_nothing_behind()
    {
        await using var h = new StoreHarness();
        var dom0 = await h.Dom0Async();
        await XenstoreLayoutWriter.ApplyAsync(dom0, WebDomain());
        await dom0.WriteAsync("/local/domain/7/device/vif/0/stale", "from an earlier run");
        await XenstoreLayoutWriter.ApplyAsync(dom0, WebDomain());
        Assert.Null(await dom0.TryReadAsync("/local/domain/7/device/vif/0/stale"));

        await XenstoreLayoutWriter.ApplyAsync(dom0, XenstoreLayout.DeviceRemoval("vif", Web, 0));
        Assert.Null(await dom0.TryReadAsync("/local/domain/7/device/vif/0/backend"));
        Assert.Null(await dom0.TryReadAsync("/local/domain/0/backend/vif/7/0/frontend"));
        Assert.Equal("disk", await dom0.ReadAsync("/local/domain/7/device/vbd/51712/device-type"));

        await XenstoreLayoutWriter.ApplyAsync(dom0, XenstoreLayout.DomainRemoval(Web, Uuid));
        Assert.Null(await dom0.TryReadAsync("/local/domain/7/name"));
        Assert.Null(await dom0.TryReadAsync("/local/domain/0/backend/vbd/7/51712/mode"));
        Assert.Null(await dom0.TryReadAsync("/local/domain/0/backend/console/7/0/frontend"));
        Assert.Null(await dom0.TryReadAsync($"/vm/{Uuid:D}/name"));
        Assert.Null(await dom0.TryReadAsync("/libxl/7/device/vif/0/frontend"));
    }
}
