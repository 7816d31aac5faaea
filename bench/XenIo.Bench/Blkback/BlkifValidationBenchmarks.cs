using System.Buffers.Binary;
using BenchmarkDotNet.Attributes;
using XenIo.Blkback.Requests;
using XenIo.Hypervisor.Abi;

namespace XenIo.Bench.Blkback;

/// <summary>Copy + validate of one ring slot: must stay allocation-free (MemoryDiagnoser shows 0 B).</summary>
[MemoryDiagnoser]
public class BlkifValidationBenchmarks
{
    private readonly byte[] _write11 = new byte[BlkifLimits.RequestSlotSize];
    private readonly byte[] _indirectSlot = new byte[BlkifLimits.RequestSlotSize];
    private readonly BlkifRequestSegment[] _indirectSegments = new BlkifRequestSegment[256];
    private readonly BlkSegment[] _segments = new BlkSegment[256];
    private readonly DiskGeometry _disk = new(1UL << 31, DiscardEnabled: true);

    [GlobalSetup]
    public void Setup()
    {
        _write11[0] = (byte)BlkifOperation.Write;
        _write11[1] = 11;
        BinaryPrimitives.WriteUInt64LittleEndian(_write11.AsSpan(16), 4096);
        for (int i = 0; i < 11; i++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(_write11.AsSpan(24 + 8 * i), (uint)(100 + i));
            _write11[29 + 8 * i] = 7;
        }
        _indirectSlot[0] = (byte)BlkifOperation.Indirect;
        _indirectSlot[1] = (byte)BlkifOperation.Read;
        BinaryPrimitives.WriteUInt16LittleEndian(_indirectSlot.AsSpan(2), 256);
        for (int i = 0; i < 256; i++) _indirectSegments[i] = new BlkifRequestSegment { Gref = (uint)i, FirstSect = 0, LastSect = 7 };
    }

    [Benchmark]
    public short Write11Segments()
    {
        var copy = BlkifRequestValidator.CopySlot(_write11);
        return BlkifRequestValidator.Validate(copy, _disk, _segments, out _);
    }

    [Benchmark]
    public short Indirect256Segments()
    {
        var copy = BlkifRequestValidator.CopySlot(_indirectSlot);
        short s = BlkifRequestValidator.ValidateIndirectHeader(BlkifRequestValidator.AsIndirect(copy), _disk, out var plan);
        return s != BlkifStatus.Okay ? s : BlkifRequestValidator.ValidateIndirectSegments(plan, _indirectSegments, _disk, _segments, out _);
    }
}
