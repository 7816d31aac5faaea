using XenIo.Guest.Blkfront;
using XenIo.Guest.Blkfront.Ring;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Domains.Toolstack;
using Xunit;
using Xunit.Abstractions;

namespace XenIo.Blkback.Tests.Ring;

/// <summary>What blkback offers and refuses per vbd, and vbds that appear and disappear at runtime (block-attach/-detach).</summary>
public sealed class BlkAttachTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Read_only_and_cdrom_disks_refuse_writes_and_say_so_in_info()
    {
        await using var rig = await BlkRig.StartAsync();
        var image = rig.CreateImage("ro.img", 8);
        var iso = rig.CreateImage("cd.iso", 4);
        var d = await rig.CreateDomainAsync("ro", 32, BlkRig.Disk(image, readOnly: true), BlkRig.Disk(iso, virtualDevice: 51728, cdrom: true));
        var guest = rig.AttachGuest(d);
        await rig.StartBlkbackAsync();
        try
        {
            var disk = await rig.ConnectAsync(guest, options: new BlkfrontOptions { RingPageOrder = 0 });
            Assert.True(disk.ReadOnly);
            Assert.Equal("4", await rig.Dom0.ReadAsync($"{BlkRig.BackendPath(d.Domid)}/info"));
            Assert.Equal("0", await rig.Dom0.ReadAsync($"{BlkRig.BackendPath(d.Domid)}/feature-discard"));
            // The backend refuses a write even from a frontend that ignores the flag.
            Assert.Equal(BlkifStatus.Error, await disk.DirectAsync(true, 0, 4096, null, null));
            Assert.Equal(BlkifStatus.Okay, await disk.DirectAsync(false, 0, 4096, null, null));
            await Assert.ThrowsAsync<BlockDeviceException>(async () => await disk.WriteAsync(0, new byte[512]));

            var cd = await rig.ConnectAsync(guest, 51728, new BlkfrontOptions { RingPageOrder = 0 });
            Assert.True(cd.ReadOnly);
            Assert.Equal("7", await rig.Dom0.ReadAsync($"{BlkRig.BackendPath(d.Domid, 51728)}/info")); // CDROM | REMOVABLE | READONLY
            Assert.Equal(BlkifStatus.Error, await cd.DirectAsync(true, 8, 4096, null, null));
        }
        catch
        {
            output.WriteLine(rig.BlkbackLog);
            throw;
        }
    }

    [Fact]
    public async Task A_4096_byte_sector_disk_in_O_DIRECT_mode_takes_whole_sectors_only()
    {
        await using var rig = await BlkRig.StartAsync();
        var image = rig.CreateImage("4k.img", 16);
        var d = await rig.CreateDomainAsync("fourk", 32, BlkRig.Disk(image));
        var guest = rig.AttachGuest(d);
        await rig.StartBlkbackAsync(direct: true, sectorSize: 4096);
        var front = await rig.ConnectAsync(guest, options: new BlkfrontOptions { RingPageOrder = 0 });
        Assert.Equal(4096, front.SectorSize);
        Assert.Equal("4096", await rig.Dom0.ReadAsync($"{BlkRig.BackendPath(d.Domid)}/sector-size"));
        Assert.Equal((16L << 20) / 512, long.Parse(await rig.Dom0.ReadAsync($"{BlkRig.BackendPath(d.Domid)}/sectors")));
        var data = new byte[3 * 4096];
        Random.Shared.NextBytes(data);
        await front.WriteAsync(64, data);
        var back = new byte[data.Length];
        await front.ReadAsync(64, back);
        Assert.Equal(data, back);
        await Assert.ThrowsAsync<BlockDeviceException>(async () => await front.WriteAsync(64, new byte[512]));
        await Assert.ThrowsAsync<BlockDeviceException>(async () => await front.ReadAsync(65, new byte[4096]));
        Assert.Equal(data, RawFile.Read(image, 64 * 512, data.Length));
    }

    [Fact]
    public async Task A_writable_image_attached_twice_and_a_qcow2_image_are_refused_with_the_reason()
    {
        await using var rig = await BlkRig.StartAsync();
        var shared = rig.CreateImage("shared.img", 8);
        var qcow = rig.CreateImage("disk.qcow2", 1);
        using (var f = new FileStream(qcow, FileMode.Open, FileAccess.Write))
            f.Write([(byte)'Q', (byte)'F', (byte)'I', 0xFB, 0, 0, 0, 3]);
        var first = await rig.CreateDomainAsync("first", 16, BlkRig.Disk(shared));
        await rig.StartBlkbackAsync();
        Assert.True(await rig.WaitBackendStateAsync(first.Domid, XenbusState.InitWait));

        var second = await rig.CreateDomainAsync("second", 16, BlkRig.Disk(shared));
        Assert.True(await rig.WaitBackendStateAsync(second.Domid, XenbusState.Closing));
        Assert.Contains("already attached", await rig.Dom0.ReadAsync($"{BlkRig.BackendPath(second.Domid)}/error"));

        // The toolstack detaches the first and writes the second's nodes again at once: blkback starts that vbd over.
        var secondGuest = rig.AttachGuest(second);
        await XenstoreLayoutWriter.ApplyAsync(rig.Dom0, XenstoreLayout.DeviceRemoval("vbd", first.Domid, BlkRig.Xvda));
        await XenstoreLayoutWriter.ApplyAsync(rig.Dom0, XenstoreLayout.Vbd(second.Domid, BlkRig.Disk(shared)));
        var front = await rig.ConnectAsync(secondGuest, options: new BlkfrontOptions { RingPageOrder = 0 });
        Assert.Equal(BlkifStatus.Okay, await front.DirectAsync(true, 0, 4096, null, null));

        var third = await rig.CreateDomainAsync("third", 16, BlkRig.Disk(qcow));
        Assert.True(await rig.WaitBackendStateAsync(third.Domid, XenbusState.Closing));
        Assert.Contains("qcow2", await rig.Dom0.ReadAsync($"{BlkRig.BackendPath(third.Domid)}/error"));
        // blkfront does not wait for a vbd the backend refused: it fails with the backend's reason.
        var refused = await Assert.ThrowsAsync<IOException>(() => rig.ConnectAsync(rig.AttachGuest(third)));
        Assert.Contains("qcow2", refused.Message);
        Assert.Equal(XenbusState.Connected.ToString("d"), await rig.Dom0.ReadAsync($"{BlkRig.BackendPath(second.Domid)}/state"));
    }

    [Fact]
    public async Task Vbds_attached_and_detached_at_runtime_are_served_and_let_go()
    {
        await using var rig = await BlkRig.StartAsync();
        var image = rig.CreateImage("hot.img", 8);
        var a = await rig.CreateDomainAsync("a", 32);
        var b = await rig.CreateDomainAsync("b", 32);
        var guestA = rig.AttachGuest(a);
        var guestB = rig.AttachGuest(b);
        await rig.StartBlkbackAsync();

        // block-attach: the toolstack writes libxl's nodes into a running system.
        await XenstoreLayoutWriter.ApplyAsync(rig.Dom0, XenstoreLayout.Vbd(a.Domid, BlkRig.Disk(image)));
        var front = await BlkfrontDevice.ConnectAsync(guestA, rig.Dom0, BlkRig.FrontendPath(a.Domid), BlkRig.BackendPath(a.Domid), 0,
            new BlkfrontOptions { RingPageOrder = 0 });
        var data = new byte[8192];
        Random.Shared.NextBytes(data);
        await front.WriteAsync(16, data);
        await front.FlushAsync();
        Assert.Contains(await rig.StatusAsync(), l => l.StartsWith($"{a.Domid}/{BlkRig.Xvda} Connected", StringComparison.Ordinal));

        // block-detach: the nodes go; blkback closes the vbd and lets go of the image, so b can have it.
        await XenstoreLayoutWriter.ApplyAsync(rig.Dom0, XenstoreLayout.DeviceRemoval("vbd", a.Domid, BlkRig.Xvda));
        await front.DisposeAsync();
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while ((await rig.StatusAsync()).Any(l => l.StartsWith($"{a.Domid}/", StringComparison.Ordinal)) && DateTime.UtcNow < deadline) await Task.Delay(20);
        Assert.DoesNotContain(await rig.StatusAsync(), l => l.StartsWith($"{a.Domid}/", StringComparison.Ordinal));
        await XenstoreLayoutWriter.ApplyAsync(rig.Dom0, XenstoreLayout.Vbd(b.Domid, BlkRig.Disk(image)));
        var other = await BlkfrontDevice.ConnectAsync(guestB, rig.Dom0, BlkRig.FrontendPath(b.Domid), BlkRig.BackendPath(b.Domid), 0,
            new BlkfrontOptions { RingPageOrder = 0 });
        await using (other)
        {
            var back = new byte[data.Length];
            await other.ReadAsync(16, back);
            Assert.Equal(data, back);
        }
    }
}
