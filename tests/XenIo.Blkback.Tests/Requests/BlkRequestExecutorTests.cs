using XenIo.Blkback.Images;
using XenIo.Blkback.Requests;
using XenIo.Hypervisor.Abi;
using XenIo.Tests;
using Xunit;

namespace XenIo.Blkback.Tests.Requests;

/// <summary>Validated ring requests carried out on a real image file: slot bytes in, image bytes and a status out.</summary>
public sealed unsafe class BlkRequestExecutorTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("xenio-blkexec-").FullName;
    private readonly RawImage _image;
    private readonly AlignedBufferPool _pages = new(11, 4096);
    private readonly AlignedBuffer[] _page = new AlignedBuffer[11];

    public BlkRequestExecutorTests()
    {
        var path = Path.Combine(_dir, "disk.img");
        using (var f = new FileStream(path, FileMode.Create)) f.SetLength(1 << 20);
        _image = RawImage.Open(new ImageOptions(path));
        for (int i = 0; i < 11; i++) Assert.True(_pages.TryRent(out _page[i]));
    }

    public void Dispose()
    {
        _image.Dispose();
        _pages.Dispose();
        Directory.Delete(_dir, true);
    }

    /// <summary>Validates a slot, then runs it with the segment ranges of the stand-in "granted pages".</summary>
    private short Run(byte[] slot, out BlkRequest request)
    {
        var segs = new BlkSegment[11];
        var copy = BlkifRequestValidator.CopySlot(slot);
        short status = BlkifRequestValidator.Validate(copy, _image.Geometry, segs, out request);
        if (status != BlkifStatus.Okay) return status;
        var buffers = new IoBuffer[request.SegmentCount];
        for (int i = 0; i < buffers.Length; i++)
            buffers[i] = new IoBuffer(_page[i].Address + segs[i].PageOffset, segs[i].Length);
        return BlkRequestExecutor.Execute(request, buffers, _image);
    }

    [Fact]
    public void Write_then_read_through_partial_segments()
    {
        new Random(1).NextBytes(_page[0].Span);
        new Random(2).NextBytes(_page[1].Span);
        var written = _page[0].Span[1024..4096].ToArray().Concat(_page[1].Span[..512].ToArray()).ToArray();
        Assert.Equal(BlkifStatus.Okay, Run(BlkifRequestValidatorTests.Slot(1, 2, 16, (8, 2, 7), (9, 0, 0)), out _));

        _page[2].Span.Clear();
        _page[3].Span.Clear();
        Assert.Equal(BlkifStatus.Okay, Run(BlkifRequestValidatorTests.Slot(0, 1, 16, (10, 0, 6)), out var r));
        Assert.Equal(BlkIoKind.Read, r.Kind);
        Assert.Equal(written, _page[0].Span[..3584].ToArray());
        var onDisk = new byte[3584];
        Assert.Equal(0, _image.Read(16 * 512, onDisk));
        Assert.Equal(written, onDisk);
    }

    [Fact]
    public void Flush_barrier_and_discard()
    {
        Assert.Equal(BlkifStatus.Okay, Run(BlkifRequestValidatorTests.Slot(3, 0, 0), out _));
        Assert.Equal(BlkifStatus.Okay, Run(BlkifRequestValidatorTests.Slot(2, 0, 0), out _));
        _page[0].Span.Fill(0xAB);
        Assert.Equal(BlkifStatus.Okay, Run(BlkifRequestValidatorTests.Slot(2, 1, 64, (8, 0, 7)), out _));
        var back = new byte[4096];
        Assert.Equal(0, _image.Read(64 * 512, back));
        Assert.All(back, b => Assert.Equal(0xAB, b));

        var discard = BlkifRequestValidatorTests.Slot(5, 0, 64);
        BitConverter.TryWriteBytes(discard.AsSpan(24), 8UL);
        Assert.Equal(BlkifStatus.Okay, Run(discard, out _));
        Assert.Equal(0, _image.Read(64 * 512, back));
        Assert.All(back, b => Assert.Equal(0, b));
    }

    [Fact]
    public void Buffers_that_do_not_match_the_request_are_an_error()
    {
        var segs = new BlkSegment[11];
        var copy = BlkifRequestValidator.CopySlot(BlkifRequestValidatorTests.Slot(0, 2, 0, (8, 0, 7), (9, 0, 7)));
        Assert.Equal(BlkifStatus.Okay, BlkifRequestValidator.Validate(copy, _image.Geometry, segs, out var r));
        Assert.Equal(BlkifStatus.Error, BlkRequestExecutor.Execute(r, [new IoBuffer(_page[0].Address, 4096)], _image));
        Assert.Equal(BlkifStatus.Error, BlkRequestExecutor.Execute(r, [new IoBuffer(_page[0].Address, 4096), new IoBuffer(_page[1].Address, 512)], _image));
    }

    [Fact]
    public void Validation_and_execution_allocate_nothing_per_request()
    {
        var slot = BlkifRequestValidatorTests.Slot(1, 1, 8, (8, 0, 7));
        var segs = new BlkSegment[11];
        var one = new IoBuffer[1];
        int failures = 0;
        // No Assert inside the loop: xunit's comparers allocate.
        void Once()
        {
            var copy = BlkifRequestValidator.CopySlot(slot);
            if (BlkifRequestValidator.Validate(copy, _image.Geometry, segs, out var r) != BlkifStatus.Okay) failures++;
            one[0] = new IoBuffer(_page[0].Address, segs[0].Length);
            if (BlkRequestExecutor.Execute(r, one, _image) != BlkifStatus.Okay) failures++;
        }
        long allocated = SteadyStateAllocation.BytesOver(1000, Once);
        Assert.Equal(0, failures);
        Assert.Equal(0, allocated);
    }
}
