using System.Diagnostics;
using System.Text;
using System.Text.Json;
using XenIo.Guest.Blkfront.Ring;
using XenIo.Guest.Blkfront.Workload;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Domains.Hyperd;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;
using XenIo.Hypervisor.Store.Transports;
using XenIo.Bench.Peers;

namespace XenIo.Bench.Blk;

/// <summary>
/// The blkif ring path (<c>blk.*</c>): blkfront's workload driver in this process, the blkback daemon in
/// its own (<c>xenio blkback --direct</c>: O_DIRECT, persistent grants), against the same fio job run
/// directly on the image file with <c>direct=1</c> and libaio, in the same run, caches dropped before
/// every job, in adjacent pairs (<see cref="PairedRounds"/>). Ratio = ring figure / file figure (MB/s
/// for sequential jobs, IOPS for random ones), the median of the pairs' ratios.
/// </summary>
public sealed class BlkRingBenchmark : ISystemBenchmark
{
    private const long ImageBytes = 1L << 30;
    private const int RuntimeSeconds = 6;

    private static readonly Job[] Jobs =
    [
        new("seq_read_1m", "read", 1 << 20, 8, true, 0.95),
        new("seq_write_1m", "write", 1 << 20, 8, true, 0.95),
        new("rand_read_4k_qd32", "randread", 4096, 32, false, 0.80),
        new("rand_write_4k_qd32", "randwrite", 4096, 32, false, 0.80),
        new("rand_read_4k_qd1", "randread", 4096, 1, false, null),
    ];

    private sealed record Job(string Key, string Rw, int BlockBytes, int QueueDepth, bool Sequential, double? Target);

    /// <summary>
    /// Pairs of (ring, fio on the file) per job, alternating which goes first: the image file's own
    /// figure swings by a third between runs on this machine (62k to 86k random-write IOPS), so one
    /// pair per job let the disk's mood decide a target.
    /// </summary>
    private const int Pairs = 3;

    /// <summary>One run of the job over the ring: MB/s or IOPS; a request that failed on the ring fails the job.</summary>
    private static async Task<double> MeasureRingAsync(BlkfrontDevice front, Job job, CancellationToken cancellationToken)
    {
        Fio.DropCaches();
        var ring = await new BlkWorkload(front, new BlkWorkloadSpec
        {
            Mode = job.Rw.Contains("read", StringComparison.Ordinal) ? BlkWorkloadMode.Read : BlkWorkloadMode.Write,
            Sequential = job.Sequential, BlockBytes = job.BlockBytes, QueueDepth = job.QueueDepth,
            Duration = TimeSpan.FromSeconds(RuntimeSeconds), Seed = job.Key.Length,
        }).RunAsync(cancellationToken);
        if (ring.Errors > 0) throw new IOException($"{ring.Errors} requests failed on the ring");
        return job.Sequential ? ring.MegabytesPerSecond : ring.Iops;
    }

    /// <summary>The same job by fio on the image file; null when fio failed.</summary>
    private static Task<double?> MeasureFileAsync(string image, Job job, CancellationToken cancellationToken)
    {
        Fio.DropCaches();
        return Fio.MeasureAsync(job.Key, image, job.Rw, job.BlockBytes, job.QueueDepth, ImageBytes, RuntimeSeconds, job.Sequential, cancellationToken);
    }

    public string Name => "blk.ring";

    public async Task RunAsync(BenchContext context, CancellationToken cancellationToken)
    {
        if (Fio.Missing() is { } why)
        {
            foreach (var job in Jobs) context.Unavailable($"blk.{job.Key}.ratio", why);
            return;
        }
        var dir = Path.Combine(context.WorkDirectory, "blk-ring");
        Directory.CreateDirectory(dir);
        var image = Path.Combine(dir, "disk.img");
        try
        {
            // Written, not sparse: reads of holes would measure nothing.
            File.Delete(image);
            if (await Fio.RunAsync(["--name=fill", $"--filename={image}", "--rw=write", "--bs=1M", $"--size={ImageBytes}",
                    "--direct=1", "--ioengine=libaio", "--iodepth=8", "--output-format=json"], cancellationToken) is null)
            {
                foreach (var job in Jobs) context.Unavailable($"blk.{job.Key}.ratio", "fio could not write the image");
                return;
            }

            await using var rig = await BlkRingRig.StartAsync(dir, image, cancellationToken);
            var front = rig.Front;
            Console.WriteLine($"  blkfront: {front.QueueCount} queue of {front.RingSize} slots, {front.MaxInFlight} in flight, {front.MaxRequestBytes / 1024} KiB per request");

            // BLK_BENCH_JOBS=key,key runs a subset (while tuning).
            var only = Environment.GetEnvironmentVariable("BLK_BENCH_JOBS")?.Split(',');
            foreach (var job in Jobs.Where(j => only is null || only.Contains(j.Key)))
            {
                string unit = job.Sequential ? "MB/s" : "IOPS";
                string suffix = job.Sequential ? "mb_s" : "iops";
                string shape = $"{job.Rw} bs={job.BlockBytes / 1024}k qd={job.QueueDepth}";
                PairedRounds.Result paired;
                try
                {
                    paired = await PairedRounds.RunAsync(() => MeasureRingAsync(front, job, cancellationToken),
                        () => MeasureFileAsync(image, job, cancellationToken), Pairs, cancellationToken);
                }
                catch (IOException e)
                {
                    context.Unavailable($"blk.{job.Key}.ratio", e.Message);
                    continue;
                }
                context.Report($"blk.{job.Key}.{suffix}", paired.Ours, unit, $"blkfront workload driver → blkif ring → blkback O_DIRECT, {shape}; median of {Pairs}");
                if (paired is not { Theirs: { } file, Ratio: { } ratio })
                {
                    context.Unavailable($"blk.{job.Key}.ratio", "fio failed on the image file");
                    continue;
                }
                context.Report($"blk.{job.Key}.file_{suffix}", file, unit, $"fio on the image file, direct=1 libaio, {shape}; median of {Pairs}");
                context.Report($"blk.{job.Key}.ratio", ratio, "x", $"ring path over fio on the image file, {paired.RatioDescription}, same run", job.Target);
            }
        }
        finally
        {
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }
}

/// <summary>fio runs for the block benchmarks: one job, JSON out, the figure of interest back.</summary>
internal static class Fio
{
    public static string? Missing()
    {
        if (Environment.UserName != "root") return "needs root (drops the page cache between jobs)";
        if (Which("fio") is null) return "fio is not installed (make bench-deps)";
        return null;
    }

    private static string? Which(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':').Append("/usr/sbin").Append("/sbin")
            .Select(d => Path.Combine(d, tool)).FirstOrDefault(File.Exists);

    public static void DropCaches()
    {
        try { File.WriteAllText("/proc/sys/vm/drop_caches", "3"); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    /// <summary>MB/s for sequential jobs, IOPS for random ones; null if fio failed.</summary>
    public static async Task<double?> MeasureAsync(string name, string target, string rw, int blockBytes, int ioDepth, long size, int seconds, bool sequential, CancellationToken ct)
    {
        var json = await RunAsync(
        [
            $"--name={name}", $"--filename={target}", $"--rw={rw}", $"--bs={blockBytes}", $"--iodepth={ioDepth}",
            $"--size={size}", "--direct=1", "--ioengine=libaio", "--time_based", $"--runtime={seconds}",
            "--randrepeat=0", "--norandommap", "--output-format=json",
        ], ct);
        if (json is null) return null;
        using var doc = JsonDocument.Parse(json);
        var stats = doc.RootElement.GetProperty("jobs")[0].GetProperty(rw.Contains("read", StringComparison.Ordinal) ? "read" : "write");
        return sequential ? stats.GetProperty("bw_bytes").GetDouble() / 1e6 : stats.GetProperty("iops").GetDouble();
    }

    public static async Task<string?> RunAsync(string[] args, CancellationToken ct)
    {
        var psi = new ProcessStartInfo("fio") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync(ct);
        var stderr = p.StandardError.ReadToEndAsync(ct);
        await p.WaitForExitAsync(ct);
        if (p.ExitCode != 0)
        {
            Console.WriteLine($"  fio {string.Join(' ', args)} failed ({p.ExitCode}): {(await stderr).Trim()}");
            return null;
        }
        var text = await stdout;
        int start = text.IndexOf('{', StringComparison.Ordinal);
        return start < 0 ? null : text[start..];
    }
}
