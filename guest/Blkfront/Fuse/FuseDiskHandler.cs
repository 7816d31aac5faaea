using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using XenIo.Guest.Interop;

namespace XenIo.Guest.Blkfront.Fuse;

/// <summary>What the worker does after a request.</summary>
public enum FuseHandled
{
    Continue,
    /// <summary>FUSE_DESTROY was answered: the connection is ending.</summary>
    Destroy,
}

/// <summary>
/// The FUSE protocol for a file system of one file, the disk: a root directory (node 1) holding
/// <see cref="FileName"/> (node 2). Parses each request defensively (lengths checked before every
/// read; the kernel is trusted, but a bad request gets an errno, never an exception), maps READ,
/// WRITE, FSYNC and FALLOCATE(PUNCH_HOLE) to the <see cref="IBlockDevice"/>, and answers the rest
/// from constants. Stateless per request, so any number of workers can share it.
/// </summary>
public sealed class FuseDiskHandler
{
    public const ulong DiskNodeId = 2;
    private const int InHeaderSize = 40;
    private const int FallocPunchHoleKeepSize = Libc.Fuse.FALLOC_FL_PUNCH_HOLE | Libc.Fuse.FALLOC_FL_KEEP_SIZE;
    private const ulong ValidSeconds = 3600; // the disk never changes size or name behind the kernel's back

    private readonly IBlockDevice _device;
    private readonly byte[] _fileNameUtf8;
    private readonly ulong _startTime = (ulong)DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    private int _unalignedLogged;

    public FuseDiskHandler(IBlockDevice device, string fileName = "disk", int maxWrite = 256 * 1024, ushort maxBackground = 64)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (fileName.Length == 0 || fileName.Contains('/') || fileName is "." or "..")
            throw new ArgumentException("a plain file name", nameof(fileName));
        if (maxWrite < 128 * 1024 || maxWrite % 4096 != 0 || maxWrite > 1 << 20)
            throw new ArgumentOutOfRangeException(nameof(maxWrite), maxWrite, "128 KiB..1 MiB in whole pages");
        _device = device;
        FileName = fileName;
        _fileNameUtf8 = Encoding.UTF8.GetBytes(fileName);
        MaxWrite = maxWrite;
        MaxBackground = maxBackground;
    }

    public string FileName { get; }
    public int MaxWrite { get; }
    public ushort MaxBackground { get; }

    /// <summary>Protocol minor version the kernel and we agreed on (0 before FUSE_INIT).</summary>
    public uint NegotiatedMinor { get; private set; }

    /// <summary>One line per unusual event (a malformed request, a device error); the agent's log.</summary>
    public Action<string>? Log { get; init; }

    /// <summary>Handles the <paramref name="length"/>-byte request at the start of <paramref name="buffers"/>.Request.</summary>
    public FuseHandled Handle(int length, FuseBuffers buffers, IFuseReplySink sink)
    {
        var request = buffers.Request.Span;
        if (length < InHeaderSize || length > request.Length)
        {
            Log?.Invoke($"fuse: dropped a {length}-byte request (shorter than its header)");
            return FuseHandled.Continue;
        }
        var header = MemoryMarshal.Read<FuseInHeader>(request);
        int bodyLength = length - InHeaderSize - header.TotalExtLen * 8;
        if (header.Len != (uint)length || bodyLength < 0)
        {
            Log?.Invoke($"fuse: request {header.Unique} op {(uint)header.Opcode} claims {header.Len} bytes, read {length}");
            if (!IsNoReply(header.Opcode)) sink.Reply(header.Unique, -Libc.Fuse.EIO, default, default);
            return FuseHandled.Continue;
        }
        var body = request.Slice(InHeaderSize, bodyLength);
        try
        {
            return Dispatch(header, body, bodyLength, buffers, sink);
        }
        catch (BlockDeviceException e)
        {
            sink.Reply(header.Unique, -(e.Errno > 0 ? e.Errno : Libc.Fuse.EIO), default, default);
        }
        catch (Exception e)
        {
            // A worker is the agent's boundary: whatever the device throws becomes EIO for this request only.
            Log?.Invoke($"fuse: {header.Opcode} failed: {e.Message}");
            sink.Reply(header.Unique, -Libc.Fuse.EIO, default, default);
        }
        return FuseHandled.Continue;
    }

    private static bool IsNoReply(FuseOpcode op) => op is FuseOpcode.Forget or FuseOpcode.BatchForget or FuseOpcode.Interrupt;

    private FuseHandled Dispatch(in FuseInHeader h, ReadOnlySpan<byte> body, int bodyLength, FuseBuffers buffers, IFuseReplySink sink)
    {
        ulong u = h.Unique;
        switch (h.Opcode)
        {
            case FuseOpcode.Init:
                Init(u, body, sink);
                return FuseHandled.Continue;

            case FuseOpcode.Destroy:
                sink.Reply(u, 0, default, default);
                return FuseHandled.Destroy;

            case FuseOpcode.Forget:
            case FuseOpcode.BatchForget:
                // One fixed inode: nothing to forget. No reply, by protocol.
                return FuseHandled.Continue;

            case FuseOpcode.Interrupt:
                // Every request here finishes on its own; its normal reply answers the interrupt too.
                return FuseHandled.Continue;

            case FuseOpcode.Lookup:
            {
                int nul = body.IndexOf((byte)0);
                if (nul < 0) { Error(u, Libc.Fuse.EINVAL, sink); break; }
                if (h.NodeId != FuseConstants.RootId || !body[..nul].SequenceEqual(_fileNameUtf8)) { Error(u, Libc.Fuse.ENOENT, sink); break; }
                var entry = new FuseEntryOut
                {
                    NodeId = DiskNodeId,
                    Generation = 1,
                    EntryValid = ValidSeconds,
                    AttrValid = ValidSeconds,
                    Attr = DiskAttr(),
                };
                Send(u, entry, sink);
                break;
            }

            case FuseOpcode.GetAttr:
            case FuseOpcode.SetAttr:
            {
                if (h.Opcode == FuseOpcode.SetAttr)
                {
                    if (bodyLength < Unsafe.SizeOf<FuseSetAttrIn>()) { Error(u, Libc.Fuse.EINVAL, sink); break; }
                    var set = MemoryMarshal.Read<FuseSetAttrIn>(body);
                    // A disk has the size it has: truncation or growth is refused; times and modes are accepted and ignored.
                    if ((set.Valid & FuseConstants.FAttrSize) != 0 && (h.NodeId != DiskNodeId || set.Size != (ulong)_device.SizeBytes))
                    {
                        Error(u, h.NodeId == DiskNodeId ? Libc.Fuse.EPERM : Libc.Fuse.EISDIR, sink);
                        break;
                    }
                }
                FuseAttr attr;
                if (h.NodeId == FuseConstants.RootId) attr = RootAttr();
                else if (h.NodeId == DiskNodeId) attr = DiskAttr();
                else { Error(u, Libc.Fuse.ENOENT, sink); break; }
                Send(u, new FuseAttrOut { AttrValid = ValidSeconds, Attr = attr }, sink);
                break;
            }

            case FuseOpcode.Open:
            {
                if (bodyLength < Unsafe.SizeOf<FuseOpenIn>()) { Error(u, Libc.Fuse.EINVAL, sink); break; }
                var open = MemoryMarshal.Read<FuseOpenIn>(body);
                if (h.NodeId == FuseConstants.RootId) { Error(u, Libc.Fuse.EISDIR, sink); break; }
                if (h.NodeId != DiskNodeId) { Error(u, Libc.Fuse.ENOENT, sink); break; }
                if (_device.ReadOnly && (open.Flags & Libc.Fuse.O_ACCMODE) != Libc.Fuse.O_RDONLY) { Error(u, Libc.Fuse.EROFS, sink); break; }
                // Direct I/O: no page cache in the agent's kernel between the loop device and the ring, so
                // a flush the guest issues reaches the backend, and memory is not spent twice.
                Send(u, new FuseOpenOut { Fh = 1, OpenFlags = FuseConstants.FOpenDirectIo | FuseConstants.FOpenParallelDirectWrites }, sink);
                break;
            }

            case FuseOpcode.OpenDir:
                if (h.NodeId != FuseConstants.RootId) { Error(u, Libc.Fuse.ENOENT, sink); break; }
                Send(u, new FuseOpenOut { Fh = 0 }, sink);
                break;

            case FuseOpcode.ReadDir:
                ReadDir(u, h.NodeId, body, buffers, sink);
                break;

            case FuseOpcode.Read:
                Read(u, h.NodeId, body, buffers, sink);
                break;

            case FuseOpcode.Write:
                Write(u, h.NodeId, body, buffers, sink);
                break;

            case FuseOpcode.FSync:
                if (bodyLength < Unsafe.SizeOf<FuseFSyncIn>()) { Error(u, Libc.Fuse.EINVAL, sink); break; }
                Wait(_device.FlushAsync());
                sink.Reply(u, 0, default, default);
                break;

            case FuseOpcode.Flush:
            case FuseOpcode.Release:
            case FuseOpcode.ReleaseDir:
            case FuseOpcode.FSyncDir:
            case FuseOpcode.Access:
                // close() of a direct-I/O file has nothing buffered; durability is FSYNC's job.
                sink.Reply(u, 0, default, default);
                break;

            case FuseOpcode.StatFs:
            {
                ulong blocks = (ulong)_device.SizeBytes / 4096;
                Send(u, new FuseStatFsOut { Blocks = blocks, BFree = 0, BAvail = 0, Files = 2, FFree = 0, BSize = 4096, NameLen = 255, FrSize = 4096 }, sink);
                break;
            }

            case FuseOpcode.FAllocate:
                FAllocate(u, h.NodeId, body, sink);
                break;

            default:
                // Xattrs, links, creation, locks...: a disk file has none. ENOSYS makes the kernel stop asking.
                Error(u, Libc.Fuse.ENOSYS, sink);
                break;
        }
        return FuseHandled.Continue;
    }

    private void Init(ulong u, ReadOnlySpan<byte> body, IFuseReplySink sink)
    {
        if (body.Length < Unsafe.SizeOf<FuseInitIn>()) { Error(u, Libc.Fuse.EINVAL, sink); return; }
        var init = MemoryMarshal.Read<FuseInitIn>(body);
        if (init.Major < FuseConstants.KernelVersion)
        {
            Log?.Invoke($"fuse: kernel protocol {init.Major}.{init.Minor} is too old");
            Error(u, Libc.Fuse.EPROTO, sink);
            return;
        }
        if (init.Major > FuseConstants.KernelVersion)
        {
            // The kernel retries with our major version when we answer with it alone.
            Send(u, new FuseInitOut { Major = FuseConstants.KernelVersion, Minor = FuseConstants.KernelMinorVersion }, sink);
            return;
        }
        NegotiatedMinor = Math.Min(init.Minor, FuseConstants.KernelMinorVersion);
        uint wanted = FuseConstants.AsyncRead | FuseConstants.BigWrites | FuseConstants.AsyncDio | FuseConstants.MaxPages | FuseConstants.ParallelDirops;
        var reply = new FuseInitOut
        {
            Major = FuseConstants.KernelVersion,
            Minor = NegotiatedMinor,
            MaxReadahead = init.MaxReadahead,
            Flags = init.Flags & wanted,
            // The default of 12 background requests caps the loop device's queue depth (LINUX-NOTES.md).
            MaxBackground = MaxBackground,
            CongestionThreshold = (ushort)(MaxBackground * 3 / 4),
            MaxWrite = (uint)MaxWrite,
            TimeGran = 1,
            MaxPages = (ushort)(MaxWrite / 4096),
        };
        Send(u, reply, sink);
    }

    private void Read(ulong u, ulong node, ReadOnlySpan<byte> body, FuseBuffers buffers, IFuseReplySink sink)
    {
        if (body.Length < Unsafe.SizeOf<FuseIoIn>()) { Error(u, Libc.Fuse.EINVAL, sink); return; }
        if (node != DiskNodeId) { Error(u, node == FuseConstants.RootId ? Libc.Fuse.EISDIR : Libc.Fuse.ENOENT, sink); return; }
        var io = MemoryMarshal.Read<FuseIoIn>(body);
        if (io.Size > (uint)buffers.Data.Length) { Error(u, Libc.Fuse.EINVAL, sink); return; }
        ulong size = (ulong)_device.SizeBytes;
        if (io.Offset >= size) { sink.Reply(u, 0, default, default); return; } // end of file: empty read
        int length = (int)Math.Min(io.Size, size - io.Offset);
        if (!Aligned(io.Offset, length)) { Error(u, Libc.Fuse.EINVAL, sink); return; }
        var data = buffers.Data[..length];
        Wait(_device.ReadAsync(io.Offset / 512, data));
        sink.Reply(u, 0, default, data.Span);
    }

    private void Write(ulong u, ulong node, ReadOnlySpan<byte> body, FuseBuffers buffers, IFuseReplySink sink)
    {
        int inSize = Unsafe.SizeOf<FuseIoIn>();
        if (body.Length < inSize) { Error(u, Libc.Fuse.EINVAL, sink); return; }
        if (node != DiskNodeId) { Error(u, node == FuseConstants.RootId ? Libc.Fuse.EISDIR : Libc.Fuse.ENOENT, sink); return; }
        var io = MemoryMarshal.Read<FuseIoIn>(body);
        if (io.Size != (uint)(body.Length - inSize)) { Error(u, Libc.Fuse.EINVAL, sink); return; }
        if (_device.ReadOnly) { Error(u, Libc.Fuse.EROFS, sink); return; }
        ulong size = (ulong)_device.SizeBytes;
        if (io.Offset > size || io.Size > size - io.Offset) { Error(u, Libc.Fuse.ENOSPC, sink); return; }
        if (!Aligned(io.Offset, (int)io.Size)) { Error(u, Libc.Fuse.EINVAL, sink); return; }
        if (io.Size > 0)
            Wait(_device.WriteAsync(io.Offset / 512, buffers.Request.Slice(InHeaderSize + inSize, (int)io.Size)));
        Send(u, new FuseWriteOut { Size = io.Size }, sink);
    }

    private void FAllocate(ulong u, ulong node, ReadOnlySpan<byte> body, IFuseReplySink sink)
    {
        if (body.Length < Unsafe.SizeOf<FuseFAllocateIn>()) { Error(u, Libc.Fuse.EINVAL, sink); return; }
        if (node != DiskNodeId) { Error(u, Libc.Fuse.ENOENT, sink); return; }
        var f = MemoryMarshal.Read<FuseFAllocateIn>(body);
        ulong size = (ulong)_device.SizeBytes;
        if (f.Offset > size || f.Length > size - f.Offset)
        {
            // Nothing lies past the end of a disk; allocating there would grow it.
            Error(u, (f.Mode & Libc.Fuse.FALLOC_FL_PUNCH_HOLE) != 0 ? Libc.Fuse.EINVAL : Libc.Fuse.EFBIG, sink);
            return;
        }
        switch (f.Mode)
        {
            case 0:
            case (uint)Libc.Fuse.FALLOC_FL_KEEP_SIZE:
                // Every block of a disk already exists.
                sink.Reply(u, 0, default, default);
                return;
            case (uint)FallocPunchHoleKeepSize:
                if (_device.ReadOnly) { Error(u, Libc.Fuse.EROFS, sink); return; }
                if (!_device.SupportsDiscard) { Error(u, Libc.Fuse.EOPNOTSUPP, sink); return; }
                // Discard whole sectors only: a partial sector at either end is left as it is, which discard allows.
                ulong first = (f.Offset + 511) / 512;
                ulong end = (f.Offset + f.Length) / 512;
                if (end > first) Wait(_device.DiscardAsync(first, end - first));
                sink.Reply(u, 0, default, default);
                return;
            default:
                Error(u, Libc.Fuse.EOPNOTSUPP, sink);
                return;
        }
    }

    private void ReadDir(ulong u, ulong node, ReadOnlySpan<byte> body, FuseBuffers buffers, IFuseReplySink sink)
    {
        if (body.Length < Unsafe.SizeOf<FuseIoIn>()) { Error(u, Libc.Fuse.EINVAL, sink); return; }
        if (node != FuseConstants.RootId) { Error(u, Libc.Fuse.ENOENT, sink); return; }
        var io = MemoryMarshal.Read<FuseIoIn>(body);
        var output = buffers.Data.Span[..(int)Math.Min(io.Size, (uint)buffers.Data.Length)];
        int used = 0;
        for (ulong index = io.Offset; index < 3; index++)
        {
            ReadOnlySpan<byte> name = index switch { 0 => "."u8, 1 => ".."u8, _ => _fileNameUtf8 };
            ulong ino = index == 2 ? DiskNodeId : FuseConstants.RootId;
            uint type = index == 2 ? 8u : 4u; // DT_REG, DT_DIR
            int recordLength = (24 + name.Length + 7) & ~7;
            if (used + recordLength > output.Length) break;
            var rec = output.Slice(used, recordLength);
            rec.Clear();
            MemoryMarshal.Write(rec, in ino);
            ulong next = index + 1;
            MemoryMarshal.Write(rec[8..], in next);
            uint nameLength = (uint)name.Length;
            MemoryMarshal.Write(rec[16..], in nameLength);
            MemoryMarshal.Write(rec[20..], in type);
            name.CopyTo(rec[24..]);
            used += recordLength;
        }
        sink.Reply(u, 0, default, output[..used]);
    }

    private bool Aligned(ulong offset, int length)
    {
        // The disk is addressed in whole logical sectors, like a block device opened with O_DIRECT.
        uint sector = (uint)_device.SectorSize;
        if (offset % sector == 0 && (uint)length % sector == 0) return true;
        if (Interlocked.Exchange(ref _unalignedLogged, 1) == 0)
            Log?.Invoke($"fuse: refused unaligned I/O at {offset}+{length} (sector size {sector}); logged once");
        return false;
    }

    private FuseAttr RootAttr() => new()
    {
        Ino = FuseConstants.RootId,
        Mode = FuseConstants.SIfDir | 0x1ED, // 0755
        NLink = 2,
        ATime = _startTime, MTime = _startTime, CTime = _startTime,
        BlkSize = 4096,
    };

    private FuseAttr DiskAttr() => new()
    {
        Ino = DiskNodeId,
        Size = (ulong)_device.SizeBytes,
        Blocks = (ulong)_device.SizeBytes / 512,
        Mode = FuseConstants.SIfReg | (_device.ReadOnly ? 0x100u : 0x180u), // 0400 or 0600
        NLink = 1,
        ATime = _startTime, MTime = _startTime, CTime = _startTime,
        BlkSize = (uint)Math.Max(4096, _device.SectorSize),
    };

    private static void Error(ulong unique, int errno, IFuseReplySink sink) => sink.Reply(unique, -errno, default, default);

    private static void Send<T>(ulong unique, in T body, IFuseReplySink sink) where T : unmanaged =>
        sink.Reply(unique, 0, MemoryMarshal.AsBytes(new ReadOnlySpan<T>(in body)), default);

    // Devices complete synchronously when they can; only a pending one costs a Task.
    private static void Wait(ValueTask pending)
    {
        if (pending.IsCompletedSuccessfully) return;
        pending.AsTask().GetAwaiter().GetResult();
    }
}
