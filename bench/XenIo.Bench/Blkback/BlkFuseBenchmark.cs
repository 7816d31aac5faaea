using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using XenIo.Guest.Blkfront;

namespace XenIo.Bench.Blkback;

/// <summary>
/// blkfront's FUSE/loop path (<c>blk.fuse.*</c>): the same fio jobs on the loop device the guest's tools
/// use and, in the same run, directly on the image file with <c>direct=1</c> (the baseline). The FUSE
/// disk is blkfront's ring client, served by the blkback daemon in O_DIRECT mode (the whole guest path);
/// caches are dropped before every job. Reported as figures and ratios; the issue sets no target for this path yet.
/// </summary>
public sealed class BlkFuseBenchmark : ISystemBenchmark
{
    private const long ImageBytes = 1L << 30;
    private const int RuntimeSeconds = 6;

    private static readonly FioJob[] Jobs =
    [
        new("seq_read_1m", "read", "1M", 8, Sequential: true),
        new("seq_write_1m", "write", "1M", 8, Sequential: true),
        new("rand_read_4k_qd32", "randread", "4k", 32, Sequential: false),
        new("rand_write_4k_qd32", "randwrite", "4k", 32, Sequential: false),
        new("rand_read_4k_qd1", "randread", "4k", 1, Sequential: false),
    ];

    public string Name => "blk.fuse";

    private sealed record FioJob(string Key, string Rw, string BlockSize, int IoDepth, bool Sequential);

    public async Task RunAsync(BenchContext context, CancellationToken cancellationToken)
    {
        string? why = Missing();
        if (why is not null)
        {
            foreach (var job in Jobs) context.Unavailable($"blk.fuse.{job.Key}.ratio", why);
            return;
        }

        var dir = Path.Combine(context.WorkDirectory, "blk-fuse");
        Directory.CreateDirectory(dir);
        var image = Path.Combine(dir, "disk.img");
        var mount = Path.Combine(dir, "fuse");
        Directory.CreateDirectory(mount);
        try
        {
            // Written, not sparse: reads of holes would measure nothing.
            File.Delete(image);
            var fill = await RunFio(["--name=fill", $"--filename={image}", "--rw=write", "--bs=1M", $"--size={ImageBytes}",
                "--direct=1", "--ioengine=libaio", "--iodepth=8", "--output-format=json"], cancellationToken);
            if (fill is null)
            {
                foreach (var job in Jobs) context.Unavailable($"blk.fuse.{job.Key}.ratio", "fio could not write the image");
                return;
            }

            var baseline = new Dictionary<string, double>();
            foreach (var job in Jobs)
                baseline[job.Key] = await Measure(job, image, cancellationToken) ?? double.NaN;

            // The guest's path: FUSE file → loop device → blkfront → blkif ring → blkback (O_DIRECT) → image.
            await using var rig = await Blk.BlkRingRig.StartAsync(dir, image, cancellationToken);
            using (var disk = FuseDisk.Attach(rig.Front, mount, new FuseDiskOptions { Threads = 32, MaxWrite = 1 << 20, MaxBackground = 128 }))
            {
                foreach (var job in Jobs)
                {
                    double? fuse = await Measure(job, disk.DevicePath, cancellationToken);
                    string unit = job.Sequential ? "MB/s" : "IOPS";
                    double b = baseline[job.Key];
                    if (fuse is null || double.IsNaN(b))
                    {
                        context.Unavailable($"blk.fuse.{job.Key}.ratio", "fio failed (see the log above)");
                        continue;
                    }
                    context.Report($"blk.fuse.{job.Key}.{(job.Sequential ? "mb_s" : "iops")}", fuse.Value, unit, $"FUSE + loop (direct I/O) → blkfront → ring → blkback, {job.Rw} bs={job.BlockSize} qd={job.IoDepth}");
                    context.Report($"blk.fuse.{job.Key}.file_{(job.Sequential ? "mb_s" : "iops")}", b, unit, "same fio job on the image file, direct=1");
                    context.Report($"blk.fuse.{job.Key}.ratio", fuse.Value / b, "x", "FUSE/loop over the image file directly");
                }
            }
        }
        finally
        {
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }

    private static string? Missing()
    {
        if (Environment.UserName != "root") return "needs root (FUSE mount, loop device)";
        if (Which("fio") is null) return "fio is not installed (make bench-deps)";
        if (!File.Exists("/dev/fuse")) return "/dev/fuse is missing";
        if (!File.Exists("/dev/loop-control")) return "/dev/loop-control is missing";
        return null;
    }

    private static string? Which(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':').Append("/usr/sbin").Append("/sbin")
            .Select(d => Path.Combine(d, tool)).FirstOrDefault(File.Exists);

    /// <summary>MB/s for sequential jobs, IOPS for random ones; null if fio failed.</summary>
    private static async Task<double?> Measure(FioJob job, string target, CancellationToken cancellationToken)
    {
        DropCaches();
        var json = await RunFio(
        [
            $"--name={job.Key}", $"--filename={target}", $"--rw={job.Rw}", $"--bs={job.BlockSize}", $"--iodepth={job.IoDepth}",
            $"--size={ImageBytes}", "--direct=1", "--ioengine=libaio", "--time_based", $"--runtime={RuntimeSeconds}",
            "--ramp_time=1", "--randrepeat=0", "--norandommap", "--output-format=json",
        ], cancellationToken);
        if (json is null) return null;
        using var doc = JsonDocument.Parse(json);
        var stats = doc.RootElement.GetProperty("jobs")[0].GetProperty(job.Rw.Contains("read", StringComparison.Ordinal) ? "read" : "write");
        return job.Sequential ? stats.GetProperty("bw_bytes").GetDouble() / 1e6 : stats.GetProperty("iops").GetDouble();
    }

    private static void DropCaches()
    {
        try { File.WriteAllText("/proc/sys/vm/drop_caches", "3"); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    private static async Task<string?> RunFio(string[] args, CancellationToken cancellationToken)
    {
        var psi = new ProcessStartInfo("fio") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync(cancellationToken);
        var stderr = p.StandardError.ReadToEndAsync(cancellationToken);
        await p.WaitForExitAsync(cancellationToken);
        if (p.ExitCode != 0)
        {
            Console.WriteLine($"  fio {string.Join(' ', args)} failed ({p.ExitCode}): {(await stderr).Trim()}");
            return null;
        }
        var text = await stdout;
        // fio may print notes before the JSON object.
        int start = text.IndexOf('{', StringComparison.Ordinal);
        return start < 0 ? null : text[start..];
    }
}
