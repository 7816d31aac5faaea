using System.Buffers.Binary;
using System.Diagnostics;
using XenIo.Guest.Blkfront.Ring;
using XenIo.Hypervisor.Abi;

namespace XenIo.Guest.Blkfront.Workload;

public enum BlkWorkloadMode { Read, Write, ReadWrite }

/// <summary>What the workload driver does: fio's rw, bs, iodepth and runtime, plus flushes and a verifiable pattern.</summary>
public sealed record BlkWorkloadSpec
{
    public BlkWorkloadMode Mode { get; init; } = BlkWorkloadMode.Read;
    public bool Sequential { get; init; }
    public int BlockBytes { get; init; } = 4096;
    public int QueueDepth { get; init; } = 1;

    /// <summary>Stop after this long (null: after <see cref="TotalOps"/>).</summary>
    public TimeSpan? Duration { get; init; }
    public long TotalOps { get; init; } = 1000;

    /// <summary>A FLUSH after every this many acknowledged writes (0: never).</summary>
    public int FlushEvery { get; init; }

    /// <summary>Where the region used starts (a multiple of the block size).</summary>
    public long OffsetBytes { get; init; }

    /// <summary>Bytes of the disk used from <see cref="OffsetBytes"/> (0: the rest of it).</summary>
    public long RegionBytes { get; init; }

    /// <summary>Writes carry a pattern derived from (block, generation); reads check it against the last acknowledged write.</summary>
    public bool Verify { get; init; }

    public int Seed { get; init; } = 1;
}

public sealed record BlkWorkloadResult(long Ops, long Bytes, double Seconds, long Flushes, long Errors, long VerifyFailures)
{
    public double Iops => Ops / Seconds;
    public double MegabytesPerSecond => Bytes / Seconds / 1e6;
}

/// <summary>
/// Drives a <see cref="BlkfrontDevice"/> directly (no FUSE, no loop device) at a chosen queue depth: reads,
/// writes and flushes, sequential or random, for tests and benchmarks. With <see cref="BlkWorkloadSpec.Verify"/>
/// every write's content is a function of its block and a per-block generation, two requests never touch
/// the same block at once, and the generation acknowledged last is remembered, so <see cref="VerifyAllAsync"/>
/// can check afterwards that every acknowledged write reads back intact. Data goes straight into the
/// granted pages (<see cref="BlkfrontDevice.DirectAsync"/>).
/// </summary>
public sealed class BlkWorkload
{
    private readonly BlkfrontDevice _device;
    private readonly BlkWorkloadSpec _spec;
    private readonly long _blocks;
    private readonly uint[] _issued;
    private readonly uint[] _acked;
    private readonly int[] _busy;
    private readonly ulong _firstSector;
    private long _nextSequential, _runTarget;
    private long _ops, _bytes, _flushes, _errors, _verifyFailures, _writesSinceFlush;

    public BlkWorkload(BlkfrontDevice device, BlkWorkloadSpec spec)
    {
        _device = device;
        _spec = spec;
        if (spec.BlockBytes <= 0 || spec.BlockBytes % device.SectorSize != 0 || spec.BlockBytes > device.MaxRequestBytes)
            throw new ArgumentOutOfRangeException(nameof(spec), $"block size must be whole sectors up to {device.MaxRequestBytes} bytes");
        if (spec.OffsetBytes < 0 || spec.OffsetBytes % spec.BlockBytes != 0 || spec.OffsetBytes >= device.SizeBytes)
            throw new ArgumentOutOfRangeException(nameof(spec), "offset must be whole blocks inside the disk");
        _firstSector = (ulong)spec.OffsetBytes / 512;
        long rest = device.SizeBytes - spec.OffsetBytes;
        long region = spec.RegionBytes > 0 ? Math.Min(spec.RegionBytes, rest) : rest;
        _blocks = region / spec.BlockBytes;
        if (_blocks < spec.QueueDepth) throw new ArgumentOutOfRangeException(nameof(spec), "fewer blocks than the queue depth");
        if (spec.Verify)
        {
            _issued = new uint[_blocks];
            _acked = new uint[_blocks];
            _busy = new int[_blocks];
        }
        else
        {
            _issued = _acked = [];
            _busy = [];
        }
    }

    /// <summary>Generation 0 is a block never written (zeros, as a fresh sparse image reads).</summary>
    public uint AckedGeneration(long block) => _acked[block];

    public long Blocks => _blocks;

    /// <summary>Requests completed so far (for a test that acts mid-run).</summary>
    public long CompletedOps => Interlocked.Read(ref _ops);

    public async Task<BlkWorkloadResult> RunAsync(CancellationToken cancellationToken = default)
    {
        // A workload can run again (its generations carry over, so VerifyAllAsync covers every run).
        long ops0 = _ops, bytes0 = _bytes, flushes0 = _flushes, errors0 = _errors, verify0 = _verifyFailures;
        _runTarget = ops0 + _spec.TotalOps;
        var sw = Stopwatch.StartNew();
        var deadline = _spec.Duration is { } d ? sw.Elapsed + d : (TimeSpan?)null;
        var workers = new Task[_spec.QueueDepth];
        for (int i = 0; i < workers.Length; i++)
        {
            int seed = _spec.Seed * 7919 + i;
            workers[i] = Task.Run(() => WorkerAsync(seed, sw, deadline, cancellationToken), cancellationToken);
        }
        await Task.WhenAll(workers).ConfigureAwait(false);
        return new BlkWorkloadResult(_ops - ops0, _bytes - bytes0, sw.Elapsed.TotalSeconds, _flushes - flushes0, _errors - errors0, _verifyFailures - verify0);
    }

    private async Task WorkerAsync(int seed, Stopwatch sw, TimeSpan? deadline, CancellationToken ct)
    {
        var rng = new Random(seed);
        ulong sectorsPerBlock = (ulong)(_spec.BlockBytes / 512);
        while (!ct.IsCancellationRequested)
        {
            if (deadline is { } end ? sw.Elapsed >= end : Interlocked.Read(ref _ops) >= _runTarget) return;
            long block = _spec.Sequential ? Interlocked.Increment(ref _nextSequential) % _blocks : rng.NextInt64(_blocks);
            if (_spec.Verify && Interlocked.CompareExchange(ref _busy[block], 1, 0) != 0) continue;
            try
            {
                bool write = _spec.Mode switch
                {
                    BlkWorkloadMode.Write => true,
                    BlkWorkloadMode.Read => false,
                    _ => rng.Next(2) == 0,
                };
                short status;
                if (write)
                {
                    uint gen = _spec.Verify ? ++_issued[block] : 0;
                    status = await _device.DirectAsync(true, _firstSector + (ulong)block * sectorsPerBlock, _spec.BlockBytes,
                        _spec.Verify ? (page, data) => Fill(data, block, gen, page) : null, null, ct).ConfigureAwait(false);
                    if (status == BlkifStatus.Okay && _spec.Verify) Volatile.Write(ref _acked[block], gen);
                }
                else
                {
                    uint gen = _spec.Verify ? Volatile.Read(ref _acked[block]) : 0;
                    status = await _device.DirectAsync(false, _firstSector + (ulong)block * sectorsPerBlock, _spec.BlockBytes, null,
                        _spec.Verify ? (page, data) => { if (!Matches(data, block, gen, page)) Interlocked.Increment(ref _verifyFailures); } : null,
                        ct).ConfigureAwait(false);
                }
                if (status != BlkifStatus.Okay) Interlocked.Increment(ref _errors);
                Interlocked.Increment(ref _ops);
                Interlocked.Add(ref _bytes, _spec.BlockBytes);
                if (write && _spec.FlushEvery > 0 && Interlocked.Increment(ref _writesSinceFlush) % _spec.FlushEvery == 0)
                {
                    await _device.FlushAsync(ct).ConfigureAwait(false);
                    Interlocked.Increment(ref _flushes);
                }
            }
            finally
            {
                if (_spec.Verify) Volatile.Write(ref _busy[block], 0);
            }
        }
    }

    /// <summary>Reads every block back and counts those that are not the last acknowledged write (run with no workload running).</summary>
    public async Task<long> VerifyAllAsync(int queueDepth = 16, CancellationToken cancellationToken = default)
    {
        if (!_spec.Verify) throw new InvalidOperationException("the workload was not run with Verify");
        long bad = 0, next = -1;
        ulong sectorsPerBlock = (ulong)(_spec.BlockBytes / 512);
        async Task Reader()
        {
            while (true)
            {
                long block = Interlocked.Increment(ref next);
                if (block >= _blocks) return;
                uint gen = _acked[block];
                bool ok = true;
                short status = await _device.DirectAsync(false, _firstSector + (ulong)block * sectorsPerBlock, _spec.BlockBytes, null,
                    (page, data) => ok &= Matches(data, block, gen, page), cancellationToken).ConfigureAwait(false);
                if (status != BlkifStatus.Okay || !ok) Interlocked.Increment(ref bad);
            }
        }
        await Task.WhenAll(Enumerable.Range(0, queueDepth).Select(_ => Task.Run(Reader, cancellationToken))).ConfigureAwait(false);
        return bad;
    }

    /// <summary>The content of page <paramref name="page"/> of <paramref name="block"/> at generation <paramref name="gen"/> (0: zeros).</summary>
    public static void Fill(Span<byte> data, long block, uint gen, int page)
    {
        if (gen == 0) { data.Clear(); return; }
        ulong x = Seed(block, gen, page);
        int i = 0;
        for (; i + 8 <= data.Length; i += 8)
        {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            BinaryPrimitives.WriteUInt64LittleEndian(data[i..], x);
        }
        for (; i < data.Length; i++) data[i] = (byte)(x >> (i & 7));
    }

    public static bool Matches(ReadOnlySpan<byte> data, long block, uint gen, int page)
    {
        if (gen == 0) return !data.ContainsAnyExcept((byte)0);
        ulong x = Seed(block, gen, page);
        int i = 0;
        for (; i + 8 <= data.Length; i += 8)
        {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            if (BinaryPrimitives.ReadUInt64LittleEndian(data[i..]) != x) return false;
        }
        for (; i < data.Length; i++)
            if (data[i] != (byte)(x >> (i & 7))) return false;
        return true;
    }

    private static ulong Seed(long block, uint gen, int page) =>
        ((ulong)block * 0x9E3779B97F4A7C15UL) ^ ((ulong)gen << 32) ^ ((ulong)page * 0xBF58476D1CE4E5B9UL) | 1;
}
