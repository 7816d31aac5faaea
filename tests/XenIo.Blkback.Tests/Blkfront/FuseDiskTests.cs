using System.Diagnostics;
using System.Security.Cryptography;
using XenIo.Guest.Blkfront;
using XenIo.Tests;
using Xunit;
using Xunit.Abstractions;

namespace XenIo.Blkback.Tests.Blkfront;

/// <summary>The disk as the guest's tools see it: FUSE file, loop device, a real ext4 on it.</summary>
public sealed class FuseDiskTests(ITestOutputHelper output)
{
    private static void RequireFuseAndLoop()
    {
        Requires.Root("mounts FUSE and binds a loop device");
        Requires.Tool("mkfs.ext4");
        Requires.Tool("e2fsck");
        Requires.Tool("debugfs");
        Skip.IfNot(File.Exists("/dev/fuse"), "/dev/fuse is missing (no FUSE in this kernel or container)");
        Skip.IfNot(File.Exists("/dev/loop-control"), "/dev/loop-control is missing (no loop devices here)");
    }

    internal static (int Code, string Output) Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(120_000))
        {
            p.Kill(true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish");
        }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    private static bool Mounted(string path) =>
        File.ReadLines("/proc/self/mountinfo").Any(l => l.Split(' ') is { Length: > 4 } f && f[4] == path);

    [SkippableFact]
    public void Mkfs_mount_write_unmount_then_e2fsck_finds_it_clean()
    {
        RequireFuseAndLoop();
        var dir = Directory.CreateTempSubdirectory("xenio-fusedisk-").FullName;
        var image = Path.Combine(dir, "disk.img");
        var fuseMount = Path.Combine(dir, "fuse");
        var extMount = Path.Combine(dir, "ext4");
        Directory.CreateDirectory(fuseMount);
        Directory.CreateDirectory(extMount);
        using (var f = new FileStream(image, FileMode.Create)) f.SetLength(64 << 20);

        var files = new Dictionary<string, byte[]>();
        var rng = new Random(11);
        foreach (var (name, size) in new[] { ("small.txt", 100), ("page.bin", 4096), ("big.bin", 5 << 20) })
        {
            var data = new byte[size];
            rng.NextBytes(data);
            files[name] = data;
        }

        string? loopPath = null;
        int loopNumber = -1;
        var device = new FileBlockDevice(image);
        FuseDisk? disk = null;
        try
        {
            disk = FuseDisk.Attach(device, fuseMount, new FuseDiskOptions { Log = output.WriteLine });
            loopPath = disk.DevicePath;
            loopNumber = disk.Loop.Number;
            output.WriteLine($"attached {disk.FilePath} as {loopPath}");
            Assert.True(disk.Loop.IsBound);
            // /sys/block/*/size counts 512-byte sectors whatever the logical block size.
            Assert.Equal(64L << 20, long.Parse(File.ReadAllText($"/sys/block/loop{loopNumber}/size").Trim()) * 512);
            Assert.Equal("1", File.ReadAllText($"/sys/block/loop{loopNumber}/loop/dio").Trim());
            Assert.Equal("1", File.ReadAllText($"/sys/block/loop{loopNumber}/loop/autoclear").Trim());

            var mkfs = Run("mkfs.ext4", "-q", "-F", loopPath);
            Assert.True(mkfs.Code == 0, mkfs.Output);
            var mount = Run("mount", "-t", "ext4", loopPath, extMount);
            Assert.True(mount.Code == 0, mount.Output);
            try
            {
                foreach (var (name, data) in files) File.WriteAllBytes(Path.Combine(extMount, name), data);
                Assert.Equal(0, Run("sync").Code);
                foreach (var (name, data) in files) Assert.Equal(data, File.ReadAllBytes(Path.Combine(extMount, name)));
            }
            finally
            {
                var umount = Run("umount", extMount);
                Assert.True(umount.Code == 0, umount.Output);
            }

            disk.Dispose();
            Assert.False(disk.Loop.IsBound, "the loop device is detached");
            Assert.True(disk.Channel.Stopped, "every FUSE worker stopped");
        }
        finally
        {
            if (Mounted(extMount)) Run("umount", "-l", extMount);
            disk?.Dispose();
            device.Dispose();
        }

        Assert.False(Mounted(fuseMount), "no FUSE mount left");
        Assert.False(Mounted(extMount), "no ext4 mount left");
        Assert.False(File.Exists($"/sys/block/loop{loopNumber}/loop/backing_file"), "no loop device left");

        var fsck = Run("e2fsck", "-fn", image);
        output.WriteLine(fsck.Output);
        Assert.True(fsck.Code == 0, fsck.Output);

        // The files are in the image itself, byte for byte.
        foreach (var (name, data) in files)
        {
            var dumped = Path.Combine(dir, name + ".out");
            var dump = Run("debugfs", "-R", $"dump /{name} {dumped}", image);
            Assert.True(File.Exists(dumped), dump.Output);
            Assert.Equal(SHA256.HashData(data), SHA256.HashData(File.ReadAllBytes(dumped)));
        }
        Directory.Delete(dir, true);
    }

    [SkippableFact]
    public void Dd_through_the_loop_device_reaches_the_image_and_discard_punches_holes()
    {
        RequireFuseAndLoop();
        Requires.Tool("dd");
        Requires.Tool("blkdiscard");
        var dir = Directory.CreateTempSubdirectory("xenio-fusedisk-").FullName;
        var image = Path.Combine(dir, "disk.img");
        var fuseMount = Path.Combine(dir, "fuse");
        Directory.CreateDirectory(fuseMount);
        using (var f = new FileStream(image, FileMode.Create)) f.SetLength(16 << 20);
        var pattern = new byte[1 << 20];
        new Random(12).NextBytes(pattern);
        var source = Path.Combine(dir, "pattern.bin");
        File.WriteAllBytes(source, pattern);

        // O_DIRECT device: the FUSE write data must arrive page aligned or go through the bounce buffer.
        using (var device = new FileBlockDevice(image, direct: true))
        using (var disk = FuseDisk.Attach(device, fuseMount))
        {
            var dd = Run("dd", $"if={source}", $"of={disk.DevicePath}", "bs=64k", "seek=32", "oflag=direct", "conv=fsync", "status=none");
            Assert.True(dd.Code == 0, dd.Output);
            var back = Path.Combine(dir, "back.bin");
            dd = Run("dd", $"if={disk.DevicePath}", $"of={back}", "bs=64k", "skip=32", "count=16", "iflag=direct", "status=none");
            Assert.True(dd.Code == 0, dd.Output);
            Assert.Equal(pattern, File.ReadAllBytes(back));

            var discard = Run("blkdiscard", "-o", $"{2 << 20}", "-l", $"{1 << 20}", disk.DevicePath);
            Assert.True(discard.Code == 0, discard.Output);
        }
        var img = File.ReadAllBytes(image);
        Assert.All(img.AsSpan(2 << 20, 1 << 20).ToArray(), b => Assert.Equal(0, b));
        Assert.False(Mounted(fuseMount));
        Directory.Delete(dir, true);
    }

    [SkippableTheory]
    [InlineData(512, false)]
    [InlineData(4096, false)]
    [InlineData(512, true)]
    public void Sector_size_and_read_only_reach_the_loop_device(int sectorSize, bool readOnly)
    {
        RequireFuseAndLoop();
        Requires.Tool("dd");
        var dir = Directory.CreateTempSubdirectory("xenio-fusedisk-").FullName;
        var image = Path.Combine(dir, "disk.img");
        var fuseMount = Path.Combine(dir, "fuse");
        Directory.CreateDirectory(fuseMount);
        var content = new byte[8 << 20];
        new Random(sectorSize).NextBytes(content);
        File.WriteAllBytes(image, content);

        using (var device = new FileBlockDevice(image, sectorSize, readOnly))
        using (var disk = FuseDisk.Attach(device, fuseMount))
        {
            var sys = $"/sys/block/loop{disk.Loop.Number}";
            Assert.Equal(sectorSize.ToString(), File.ReadAllText($"{sys}/queue/logical_block_size").Trim());
            Assert.Equal(readOnly ? "1" : "0", File.ReadAllText($"{sys}/ro").Trim());
            var back = Path.Combine(dir, "back.bin");
            var read = Run("dd", $"if={disk.DevicePath}", $"of={back}", "bs=1M", "iflag=direct", "status=none");
            Assert.True(read.Code == 0, read.Output);
            Assert.Equal(content, File.ReadAllBytes(back));
            var write = Run("dd", "if=/dev/zero", $"of={disk.DevicePath}", $"bs={sectorSize}", "count=1", "oflag=direct", "status=none");
            Assert.Equal(readOnly, write.Code != 0);
        }
        Assert.False(Mounted(fuseMount));
        Assert.Equal(readOnly, File.ReadAllBytes(image).AsSpan(0, sectorSize).IndexOfAnyExcept((byte)0) >= 0);
        Directory.Delete(dir, true);
    }
}
