using System.Runtime.InteropServices;
using XenIo.Blkback.Images;
using Xunit;

namespace XenIo.Blkback.Tests.Images;

public sealed class RawImageTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("xenio-blk-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Sparse(long size, string name = "disk.img")
    {
        var path = Path.Combine(_dir, name);
        using var f = new FileStream(path, FileMode.Create);
        f.SetLength(size);
        return path;
    }

    [Fact]
    public void Geometry_from_a_sparse_file()
    {
        using var img = RawImage.Open(new ImageOptions(Sparse(8 << 20)));
        Assert.Equal(8UL << 20 >> 9, img.Geometry.Sectors);
        Assert.Equal(512, img.Geometry.SectorSize);
        Assert.False(img.Geometry.ReadOnly);
        Assert.True(img.Geometry.DiscardEnabled);
        Assert.True(img.DiscardGranularity >= 512);
        Assert.Equal(0, img.Info);
    }

    [Fact]
    public void Vbd_features_follow_the_image()
    {
        using var img = RawImage.Open(new ImageOptions(Sparse(8 << 20)) { SectorSize = 4096, PhysicalSectorSize = 4096 });
        var f = XenIo.Blkback.Xenbus.VbdFeatures.ForImage(img);
        Assert.Equal(16384UL, f.Sectors);
        Assert.Equal(4096, f.SectorSize);
        Assert.Equal(4096, f.PhysicalSectorSize);
        Assert.True(f.Discard);
        Assert.Equal(img.DiscardGranularity, f.DiscardGranularity);
        Assert.Equal(256, f.MaxIndirectSegments);
        using var cd = RawImage.Open(new ImageOptions(Sparse(1 << 20, "cd.iso")) { CdRom = true });
        var c = XenIo.Blkback.Xenbus.VbdFeatures.ForImage(cd);
        Assert.Equal(7, c.Info);
        Assert.False(c.Discard);
        Assert.False(c.Barrier);
    }

    [Fact]
    public void Size_rounds_down_to_whole_4k_sectors()
    {
        using var img = RawImage.Open(new ImageOptions(Sparse((1 << 20) + 1000)) { SectorSize = 4096 });
        Assert.Equal(1L << 20, img.SizeBytes);
        Assert.Equal((1UL << 20) / 512, img.Geometry.Sectors);
        Assert.Equal(4096, img.Geometry.SectorSize);
    }

    [Fact]
    public void Vectored_write_then_read_back()
    {
        using var img = RawImage.Open(new ImageOptions(Sparse(1 << 20)));
        var a = new byte[4096];
        var b = new byte[512];
        new Random(1).NextBytes(a);
        new Random(2).NextBytes(b);
        unsafe
        {
            fixed (byte* pa = a, pb = b)
            {
                IoBuffer[] v = [new((nint)pa, a.Length), new((nint)pb, b.Length)];
                Assert.Equal(0, img.WriteV(8192, v));
            }
        }
        var back = new byte[4608];
        Assert.Equal(0, img.Read(8192, back));
        Assert.Equal(a, back[..4096]);
        Assert.Equal(b, back[4096..]);
        Assert.Equal(0, img.Flush());
        Assert.Equal(0, img.Barrier());
    }

    [Fact]
    public void Out_of_range_io_is_an_errno_not_an_exception()
    {
        using var img = RawImage.Open(new ImageOptions(Sparse(1 << 20)));
        var buf = new byte[4096];
        Assert.NotEqual(0, img.Read((1 << 20) - 512, buf));
        Assert.NotEqual(0, img.Write(-1, buf));
        Assert.NotEqual(0, img.Discard(1 << 20, 4096));
    }

    [Fact]
    public void Discard_punches_a_hole_and_keeps_the_size()
    {
        var path = Sparse(4 << 20);
        using var img = RawImage.Open(new ImageOptions(path));
        var data = new byte[1 << 20];
        new Random(3).NextBytes(data);
        Assert.Equal(0, img.Write(0, data));
        Assert.Equal(0, img.Flush());
        long before = AllocatedBytes(path);
        Assert.Equal(0, img.Discard(0, 1 << 20));
        var back = new byte[1 << 20];
        Assert.Equal(0, img.Read(0, back));
        Assert.All(back, x => Assert.Equal(0, x));
        Assert.Equal(4L << 20, new FileInfo(path).Length);
        Assert.True(AllocatedBytes(path) < before, "the hole frees space");
    }

    [Fact]
    public void Writable_image_attached_twice_is_refused()
    {
        var path = Sparse(1 << 20);
        using var first = RawImage.Open(new ImageOptions(path));
        var e = Assert.Throws<ImageOpenException>(() => RawImage.Open(new ImageOptions(path)));
        Assert.Contains("already attached", e.Message);
        Assert.Throws<ImageOpenException>(() => RawImage.Open(new ImageOptions(path) { ReadOnly = true }));
        first.Dispose();
        using var again = RawImage.Open(new ImageOptions(path));
    }

    [Fact]
    public void Read_only_images_share_and_refuse_writes()
    {
        var path = Sparse(1 << 20);
        using var a = RawImage.Open(new ImageOptions(path) { ReadOnly = true });
        using var b = RawImage.Open(new ImageOptions(path) { CdRom = true });
        Assert.True(a.Geometry.ReadOnly);
        Assert.False(a.Geometry.DiscardEnabled);
        Assert.Equal(4, a.Info);
        Assert.Equal(1 | 2 | 4, b.Info);
        Assert.NotEqual(0, a.Write(0, new byte[512]));
        Assert.Throws<ImageOpenException>(() => RawImage.Open(new ImageOptions(path)));
    }

    [Fact]
    public void Direct_mode_with_aligned_pooled_buffers()
    {
        var path = Sparse(1 << 20);
        RawImage img;
        try { img = RawImage.Open(new ImageOptions(path) { Direct = true }); }
        catch (ImageOpenException e) when (e.Message.Contains("Invalid argument"))
        {
            Skip.If(true, "the temp file system does not support O_DIRECT");
            return;
        }
        using (img)
        using (var pool = new AlignedBufferPool(2, 8192))
        {
            Assert.True(pool.TryRent(out var w));
            Assert.True(pool.TryRent(out var r));
            Assert.False(pool.TryRent(out _));
            new Random(4).NextBytes(w.Span);
            Assert.Equal(0, img.WriteV(4096, [new IoBuffer(w.Address, w.Length)]));
            Assert.Equal(0, img.ReadV(4096, [new IoBuffer(r.Address, r.Length)]));
            Assert.True(w.Span.SequenceEqual(r.Span));
            pool.Return(w);
            pool.Return(r);
        }
    }

    [Theory]
    [InlineData("qcow2")]
    [InlineData("vhd")]
    [InlineData("qed")]
    [InlineData("qcow")]
    public void Configured_format_other_than_raw_is_refused_by_name(string format)
    {
        var e = Assert.Throws<ImageOpenException>(() => RawImage.Open(new ImageOptions(Sparse(1 << 20)) { Format = format }));
        Assert.Contains(format, e.Message);
    }

    [Theory]
    [InlineData(new byte[] { (byte)'Q', (byte)'F', (byte)'I', 0xFB, 0, 0, 0, 3 }, "qcow2")]
    [InlineData(new byte[] { (byte)'Q', (byte)'F', (byte)'I', 0xFB, 0, 0, 0, 2 }, "qcow2")]
    [InlineData(new byte[] { (byte)'Q', (byte)'F', (byte)'I', 0xFB, 0, 0, 0, 1 }, "qcow")]
    [InlineData(new byte[] { (byte)'Q', (byte)'E', (byte)'D', 0 }, "qed")]
    [InlineData(new byte[] { (byte)'c', (byte)'o', (byte)'n', (byte)'e', (byte)'c', (byte)'t', (byte)'i', (byte)'x' }, "vhd")]
    [InlineData(new byte[] { (byte)'v', (byte)'h', (byte)'d', (byte)'x', (byte)'f', (byte)'i', (byte)'l', (byte)'e' }, "vhdx")]
    public void Image_detected_by_magic_is_refused_even_as_raw(byte[] magic, string name)
    {
        var path = Sparse(1 << 20);
        using (var f = new FileStream(path, FileMode.Open)) f.Write(magic);
        var e = Assert.Throws<ImageOpenException>(() => RawImage.Open(new ImageOptions(path)));
        Assert.Contains(name, e.Message);
    }

    [Fact]
    public void Fixed_vhd_footer_at_the_end_is_detected()
    {
        var path = Sparse(1 << 20);
        using (var f = new FileStream(path, FileMode.Open))
        {
            f.Position = (1 << 20) - 512;
            f.Write("conectix"u8);
        }
        Assert.Contains("vhd", Assert.Throws<ImageOpenException>(() => RawImage.Open(new ImageOptions(path))).Message);
    }

    [Fact]
    public void Bad_configuration_is_refused_with_a_reason()
    {
        var path = Sparse(1 << 20);
        Assert.Contains("sector size", Assert.Throws<ImageOpenException>(() => RawImage.Open(new ImageOptions(path) { SectorSize = 1024 })).Message);
        Assert.Contains("no such", Assert.Throws<ImageOpenException>(() => RawImage.Open(new ImageOptions(path + ".missing"))).Message);
        Assert.Contains("smaller", Assert.Throws<ImageOpenException>(() => RawImage.Open(new ImageOptions(Sparse(100, "tiny.img")))).Message);
    }

    [Fact]
    public void Barrier_waits_for_in_flight_io()
    {
        using var img = RawImage.Open(new ImageOptions(Sparse(16 << 20)));
        var buf = new byte[1 << 20];
        // Writers and barriers interleave from several threads; every call completes and data is intact.
        Parallel.For(0, 16, i =>
        {
            var mine = new byte[1 << 20];
            mine.AsSpan().Fill((byte)i);
            Assert.Equal(0, img.Write((long)i << 20, mine));
            Assert.Equal(0, img.Barrier());
        });
        for (int i = 0; i < 16; i++)
        {
            Assert.Equal(0, img.Read((long)i << 20, buf));
            Assert.All(buf, x => Assert.Equal((byte)i, x));
        }
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int stat(string path, byte[] buf);

    private static long AllocatedBytes(string path)
    {
        var st = new byte[144];
        Assert.Equal(0, stat(path, st));
        return BitConverter.ToInt64(st, 64) * 512; // st_blocks on x86_64
    }
}
