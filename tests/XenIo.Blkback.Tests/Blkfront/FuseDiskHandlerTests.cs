using System.Buffers.Binary;
using System.Runtime.InteropServices;
using XenIo.Guest.Blkfront;
using XenIo.Guest.Blkfront.Fuse;
using XenIo.Tests;
using Xunit;

namespace XenIo.Blkback.Tests.Blkfront;

/// <summary>Byte-level tests of the FUSE protocol handler, without /dev/fuse: requests are built as the kernel writes them.</summary>
public sealed class FuseDiskHandlerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("xenio-fuse-").FullName;
    private readonly FileBlockDevice _device;
    private readonly FuseDiskHandler _handler;
    private readonly FuseBuffers _buffers = new(128 * 1024);
    private readonly Sink _sink = new();

    public FuseDiskHandlerTests()
    {
        var path = Path.Combine(_dir, "disk.img");
        using (var f = new FileStream(path, FileMode.Create)) f.SetLength(4 << 20);
        _device = new FileBlockDevice(path);
        _handler = new FuseDiskHandler(_device, maxWrite: 128 * 1024);
    }

    public void Dispose()
    {
        _buffers.Dispose();
        _device.Dispose();
        Directory.Delete(_dir, true);
    }

    private sealed class Sink : IFuseReplySink
    {
        public readonly List<(ulong Unique, int Error, byte[] Payload)> Replies = [];

        public void Reply(ulong unique, int error, ReadOnlySpan<byte> body, ReadOnlySpan<byte> data) =>
            Replies.Add((unique, error, [.. body, .. data]));
    }

    private static byte[] Request(FuseOpcode op, ulong unique, ulong node, ReadOnlySpan<byte> body)
    {
        var b = new byte[40 + body.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(b, (uint)b.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), (uint)op);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(8), unique);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(16), node);
        body.CopyTo(b.AsSpan(40));
        return b;
    }

    private static byte[] Bytes<T>(T value) where T : unmanaged => MemoryMarshal.AsBytes(new ReadOnlySpan<T>(in value)).ToArray();

    private (ulong Unique, int Error, byte[] Payload) Send(byte[] request, int? length = null)
    {
        request.CopyTo(_buffers.Request.Span);
        int before = _sink.Replies.Count;
        _handler.Handle(length ?? request.Length, _buffers, _sink);
        Assert.Equal(before + 1, _sink.Replies.Count);
        return _sink.Replies[^1];
    }

    [Fact]
    public void Struct_sizes_match_fuse_h()
    {
        Assert.Equal(40, Marshal.SizeOf<FuseInHeader>());
        Assert.Equal(16, Marshal.SizeOf<FuseOutHeader>());
        Assert.Equal(88, Marshal.SizeOf<FuseAttr>());
        Assert.Equal(128, Marshal.SizeOf<FuseEntryOut>());
        Assert.Equal(104, Marshal.SizeOf<FuseAttrOut>());
        Assert.Equal(64, Marshal.SizeOf<FuseInitOut>());
        Assert.Equal(40, Marshal.SizeOf<FuseIoIn>());
        Assert.Equal(80, Marshal.SizeOf<FuseStatFsOut>());
        Assert.Equal(32, Marshal.SizeOf<FuseFAllocateIn>());
    }

    [Fact]
    public void Init_raises_max_background_and_max_write()
    {
        var init = new FuseInitIn { Major = 7, Minor = 38, MaxReadahead = 131072, Flags = 0xFFFFFFFF };
        var r = Send(Request(FuseOpcode.Init, 1, 0, Bytes(init)));
        Assert.Equal(0, r.Error);
        var o = MemoryMarshal.Read<FuseInitOut>(r.Payload);
        Assert.Equal(7u, o.Major);
        Assert.Equal(38u, o.Minor);
        Assert.Equal(64, o.MaxBackground);
        Assert.True(o.CongestionThreshold > 12);
        Assert.Equal(128u * 1024, o.MaxWrite);
        Assert.Equal(32, o.MaxPages);
        Assert.NotEqual(0u, o.Flags & FuseConstants.BigWrites);
        Assert.NotEqual(0u, o.Flags & FuseConstants.MaxPages);
        // Only flags the kernel offered are taken.
        init.Flags = FuseConstants.AsyncRead;
        o = MemoryMarshal.Read<FuseInitOut>(Send(Request(FuseOpcode.Init, 2, 0, Bytes(init))).Payload);
        Assert.Equal(FuseConstants.AsyncRead, o.Flags);
        // An older major version is refused; a newer one is answered with ours.
        Assert.Equal(-71, Send(Request(FuseOpcode.Init, 3, 0, Bytes(new FuseInitIn { Major = 6 }))).Error);
        o = MemoryMarshal.Read<FuseInitOut>(Send(Request(FuseOpcode.Init, 4, 0, Bytes(new FuseInitIn { Major = 8 }))).Payload);
        Assert.Equal(7u, o.Major);
    }

    [Fact]
    public void Lookup_getattr_open()
    {
        var r = Send(Request(FuseOpcode.Lookup, 5, 1, "disk\0"u8));
        Assert.Equal(0, r.Error);
        var entry = MemoryMarshal.Read<FuseEntryOut>(r.Payload);
        Assert.Equal(2UL, entry.NodeId);
        Assert.Equal(4UL << 20, entry.Attr.Size);
        Assert.Equal(FuseConstants.SIfReg, entry.Attr.Mode & 0xF000);

        Assert.Equal(-2, Send(Request(FuseOpcode.Lookup, 6, 1, "other\0"u8)).Error);
        Assert.Equal(-2, Send(Request(FuseOpcode.Lookup, 7, 2, "disk\0"u8)).Error);
        Assert.Equal(-22, Send(Request(FuseOpcode.Lookup, 8, 1, "disk"u8)).Error); // no NUL

        var attr = MemoryMarshal.Read<FuseAttrOut>(Send(Request(FuseOpcode.GetAttr, 9, 1, new byte[16])).Payload);
        Assert.Equal(FuseConstants.SIfDir, attr.Attr.Mode & 0xF000);
        Assert.Equal(-2, Send(Request(FuseOpcode.GetAttr, 10, 99, new byte[16])).Error);

        var open = MemoryMarshal.Read<FuseOpenOut>(Send(Request(FuseOpcode.Open, 11, 2, Bytes(new FuseOpenIn { Flags = 2 }))).Payload);
        Assert.NotEqual(0u, open.OpenFlags & FuseConstants.FOpenDirectIo);
        Assert.Equal(-21, Send(Request(FuseOpcode.Open, 12, 1, Bytes(new FuseOpenIn()))).Error);
    }

    [Fact]
    public void Write_read_fsync_and_punch_hole()
    {
        var data = new byte[8192];
        new Random(1).NextBytes(data);
        var write = Request(FuseOpcode.Write, 20, 2, [.. Bytes(new FuseIoIn { Offset = 4096, Size = 8192 }), .. data]);
        var w = Send(write);
        Assert.Equal(0, w.Error);
        Assert.Equal(8192u, MemoryMarshal.Read<FuseWriteOut>(w.Payload).Size);

        var r = Send(Request(FuseOpcode.Read, 21, 2, Bytes(new FuseIoIn { Offset = 4096, Size = 8192 })));
        Assert.Equal(0, r.Error);
        Assert.Equal(data, r.Payload);
        Assert.Equal(0, Send(Request(FuseOpcode.FSync, 22, 2, new byte[16])).Error);

        // Reads are clamped at the end of the disk; past it they are empty.
        Assert.Equal(4096, Send(Request(FuseOpcode.Read, 23, 2, Bytes(new FuseIoIn { Offset = (4 << 20) - 4096, Size = 8192 }))).Payload.Length);
        Assert.Empty(Send(Request(FuseOpcode.Read, 24, 2, Bytes(new FuseIoIn { Offset = 8 << 20, Size = 512 }))).Payload);

        var punch = new FuseFAllocateIn { Offset = 4096, Length = 4096, Mode = 3 };
        Assert.Equal(0, Send(Request(FuseOpcode.FAllocate, 25, 2, Bytes(punch))).Error);
        r = Send(Request(FuseOpcode.Read, 26, 2, Bytes(new FuseIoIn { Offset = 4096, Size = 8192 })));
        Assert.All(r.Payload[..4096], b => Assert.Equal(0, b));
        Assert.Equal(data[4096..], r.Payload[4096..]);
        Assert.Equal(-95, Send(Request(FuseOpcode.FAllocate, 27, 2, Bytes(punch with { Mode = 0x10 }))).Error);
        Assert.Equal(-27, Send(Request(FuseOpcode.FAllocate, 28, 2, Bytes(new FuseFAllocateIn { Offset = 4 << 20, Length = 4096 }))).Error);
    }

    [Fact]
    public void Bad_writes_get_errors()
    {
        // Claimed size differs from the data carried.
        Assert.Equal(-22, Send(Request(FuseOpcode.Write, 30, 2, [.. Bytes(new FuseIoIn { Offset = 0, Size = 4096 }), .. new byte[512]])).Error);
        // Past the end.
        Assert.Equal(-28, Send(Request(FuseOpcode.Write, 31, 2, [.. Bytes(new FuseIoIn { Offset = 4 << 20, Size = 512 }), .. new byte[512]])).Error);
        // Unaligned, like a block device opened with O_DIRECT.
        Assert.Equal(-22, Send(Request(FuseOpcode.Write, 32, 2, [.. Bytes(new FuseIoIn { Offset = 100, Size = 512 }), .. new byte[512]])).Error);
        // Read larger than the negotiated buffer.
        Assert.Equal(-22, Send(Request(FuseOpcode.Read, 33, 2, Bytes(new FuseIoIn { Offset = 0, Size = 1 << 20 }))).Error);
        // Unknown opcode.
        Assert.Equal(-38, Send(Request((FuseOpcode)9999, 34, 2, default)).Error);
    }

    [Fact]
    public void No_reply_for_forget_and_interrupt_and_destroy_ends()
    {
        foreach (var op in new[] { FuseOpcode.Forget, FuseOpcode.BatchForget, FuseOpcode.Interrupt })
        {
            var req = Request(op, 40, 2, new byte[16]);
            req.CopyTo(_buffers.Request.Span);
            Assert.Equal(FuseHandled.Continue, _handler.Handle(req.Length, _buffers, _sink));
        }
        Assert.Empty(_sink.Replies);
        var destroy = Request(FuseOpcode.Destroy, 41, 0, default);
        destroy.CopyTo(_buffers.Request.Span);
        Assert.Equal(FuseHandled.Destroy, _handler.Handle(destroy.Length, _buffers, _sink));
        Assert.Equal((41UL, 0), (_sink.Replies[^1].Unique, _sink.Replies[^1].Error));
    }

    [Fact]
    public void Readdir_lists_the_disk()
    {
        var r = Send(Request(FuseOpcode.ReadDir, 50, 1, Bytes(new FuseIoIn { Offset = 0, Size = 4096 })));
        Assert.Equal(0, r.Error);
        Assert.Equal(3 * 32, r.Payload.Length);
        Assert.Equal("disk"u8.ToArray(), r.Payload.AsSpan(64 + 24, 4).ToArray());
        Assert.Empty(Send(Request(FuseOpcode.ReadDir, 51, 1, Bytes(new FuseIoIn { Offset = 3, Size = 4096 }))).Payload);
    }

    /// <summary>Random request bytes of random lengths: never an exception; a reply, if any, answers the request with 0 or a negative errno.</summary>
    [Fact]
    public void Fuzzed_requests()
    {
        var rng = new Random(7);
        var buf = new byte[64 * 1024];
        for (int i = 0; i < 100_000; i++)
        {
            int length = rng.Next(4) == 0 ? rng.Next(0, 200) : rng.Next(40, 400);
            if (rng.Next(50) == 0) length = rng.Next(0, buf.Length);
            rng.NextBytes(buf.AsSpan(0, length));
            if (length >= 40)
            {
                if (rng.Next(3) != 0) BinaryPrimitives.WriteUInt32LittleEndian(buf, (uint)length);
                if (rng.Next(3) != 0) BinaryPrimitives.WriteUInt32LittleEndian(buf.AsSpan(4), (uint)rng.Next(1, 50));
                if (rng.Next(2) == 0) BinaryPrimitives.WriteUInt64LittleEndian(buf.AsSpan(16), (ulong)rng.Next(0, 4));
                if (rng.Next(2) == 0) BinaryPrimitives.WriteUInt16LittleEndian(buf.AsSpan(36), 0);
            }
            buf.AsSpan(0, length).CopyTo(_buffers.Request.Span);
            _sink.Replies.Clear();
            _handler.Handle(length, _buffers, _sink);
            Assert.True(_sink.Replies.Count <= 1);
            if (_sink.Replies.Count == 1)
            {
                Assert.True(length >= 40);
                Assert.Equal(BinaryPrimitives.ReadUInt64LittleEndian(buf.AsSpan(8)), _sink.Replies[0].Unique);
                Assert.True(_sink.Replies[0].Error <= 0);
                Assert.True(_sink.Replies[0].Payload.Length <= 128 * 1024);
            }
        }
    }
}

/// <summary>READ and WRITE through the handler cost no allocation per request with a synchronous device.</summary>
public sealed class FuseDiskHandlerAllocationTests
{
    private sealed class NullSink : IFuseReplySink
    {
        public int Errors;
        public void Reply(ulong unique, int error, ReadOnlySpan<byte> body, ReadOnlySpan<byte> data) { if (error != 0) Errors++; }
    }

    [Fact]
    public void Read_and_write_allocate_nothing()
    {
        var dir = Directory.CreateTempSubdirectory("xenio-fusealloc-").FullName;
        var path = Path.Combine(dir, "disk.img");
        using (var f = new FileStream(path, FileMode.Create)) f.SetLength(1 << 20);
        using (var device = new FileBlockDevice(path))
        using (var buffers = new FuseBuffers(128 * 1024))
        {
            var handler = new FuseDiskHandler(device, maxWrite: 128 * 1024);
            var sink = new NullSink();
            var write = new byte[40 + 40 + 4096];
            BinaryPrimitives.WriteUInt32LittleEndian(write, (uint)write.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(write.AsSpan(4), (uint)FuseOpcode.Write);
            BinaryPrimitives.WriteUInt64LittleEndian(write.AsSpan(16), FuseDiskHandler.DiskNodeId);
            BinaryPrimitives.WriteUInt64LittleEndian(write.AsSpan(48), 8192); // offset
            BinaryPrimitives.WriteUInt32LittleEndian(write.AsSpan(56), 4096); // size
            var read = write[..80];
            BinaryPrimitives.WriteUInt32LittleEndian(read, 80);
            BinaryPrimitives.WriteUInt32LittleEndian(read.AsSpan(4), (uint)FuseOpcode.Read);
            void Once()
            {
                write.CopyTo(buffers.Request.Span);
                handler.Handle(write.Length, buffers, sink);
                read.CopyTo(buffers.Request.Span);
                handler.Handle(read.Length, buffers, sink);
            }
            long allocated = SteadyStateAllocation.BytesOver(1000, Once);
            Assert.Equal(0, sink.Errors);
            Assert.Equal(0, allocated);
        }
        Directory.Delete(dir, true);
    }
}
