using System.Diagnostics;
using System.Globalization;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Rings;
using XenIo.TestPeer.Rings;

namespace XenIo.Bench.Rings;

/// <summary>
/// <c>ring.xproc.*</c>: netif tx requests and responses between a front in this process and a back
/// in another OS process (the test peer's <c>ring-netif-tx-back</c> role) over a ring in /dev/shm,
/// at saturation, against the same exchange driven by Xen's io/ring.h macros (bench/c/ring_xproc.c,
/// compiled here by gcc -O2) with the same notifier (a Unix datagram socket pair). Runs alternate
/// between the two; the median of each is reported, and the ratio is the median of the ratios of
/// runs taken back to back (the machine is shared: neighbours see the same load).
/// </summary>
internal sealed class RingCrossProcessBenchmark : ISystemBenchmark
{
    private const ulong Count = 6_000_000;
    /// <summary>Responses before the clock starts: process start, JIT and tiering are not measured, in either.</summary>
    private const ulong Warm = 1_000_000;
    private const int Runs = 7;
    private const int RingBytes = RingGeometry.PageSize;

    public string Name => "ring";

    public Task RunAsync(BenchContext context, CancellationToken cancellationToken)
    {
        string? cExe = null, cWhy = null;
        try { cExe = CompileBaseline(context); }
        catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception) { cWhy = e.Message; }

        var ours = new List<Run>();
        var theirs = new List<Run>();
        for (int i = 0; i < Runs && !cancellationToken.IsCancellationRequested; i++)
        {
            // Alternate which goes first, so neither always follows the other's cache and scheduler state.
            if (cExe is not null && i % 2 == 1) theirs.Add(RunBaseline(cExe));
            ours.Add(RunOurs());
            if (cExe is not null && i % 2 == 0) theirs.Add(RunBaseline(cExe));
        }

        var o = Median(ours);
        string runs = "runs: " + string.Join(", ", ours.Select(r => $"{r.ReqPerSecond / 1e6:F2}M"));
        context.Report("ring.xproc.req_per_s", o.ReqPerSecond, "req/s", $"netif tx, 1 page (256 slots), median of {ours.Count}; {runs}");
        context.ReportAtMost("ring.xproc.notify_per_req", o.NotifyPerRequest, "notify/req", 0.01, "both directions, at saturation");
        if (cExe is null)
        {
            context.Unavailable("ring.xproc.c.req_per_s", cWhy ?? "no C baseline");
            context.Unavailable("ring.xproc.ratio_vs_c", cWhy ?? "no C baseline");
            return Task.CompletedTask;
        }
        var c = Median(theirs);
        context.Report("ring.xproc.c.req_per_s", c.ReqPerSecond, "req/s",
            "io/ring.h macros, gcc -O2; runs: " + string.Join(", ", theirs.Select(r => $"{r.ReqPerSecond / 1e6:F2}M")));
        context.Report("ring.xproc.c.notify_per_req", c.NotifyPerRequest, "notify/req");
        var ratios = ours.Zip(theirs, (a, b) => a.ReqPerSecond / b.ReqPerSecond).Order().ToList();
        context.Report("ring.xproc.ratio_vs_c", ratios[ratios.Count / 2], "×",
            "median of back-to-back run ratios: " + string.Join(", ", ratios.Select(r => r.ToString("F2", CultureInfo.InvariantCulture))), target: 0.5);
        return Task.CompletedTask;
    }

    private readonly record struct Run(double ReqPerSecond, double NotifyPerRequest);

    private static Run Median(List<Run> runs)
    {
        var byRate = runs.OrderBy(r => r.ReqPerSecond).ToList();
        return byRate[byRate.Count / 2];
    }

    private static Run RunOurs()
    {
        var dir = SharedRingFile.TempDirectory("xenio-bench-ring");
        try
        {
            var frontSocket = Path.Combine(dir, "front.sock");
            var backSocket = Path.Combine(dir, "back.sock");
            using var file = SharedRingFile.Create(Path.Combine(dir, "ring"), RingBytes);
            const uint start = uint.MaxValue - 1000;
            var ring = FrontRing<NetifTxRequest, NetifTxResponse>.Init(file.Address, RingBytes, start);
            using var notifier = DatagramRingNotifier.Bind(frontSocket);

            var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in new[]
                     {
                         Path.Combine(AppContext.BaseDirectory, "XenIo.TestPeer.dll"), "ring-netif-tx-back", file.Path,
                         Inv(RingBytes), Inv(start), Inv(Count), backSocket, frontSocket,
                     })
                psi.ArgumentList.Add(a);
            using var peer = Process.Start(psi) ?? throw new InvalidOperationException("could not start the ring peer");
            var stderr = peer.StandardError.ReadToEndAsync();
            try
            {
                if (peer.StandardOutput.ReadLine() != "ready")
                    throw new InvalidOperationException("ring peer did not start: " + stderr.GetAwaiter().GetResult());
                notifier.Connect(backSocket);

                var front = NetifTxExchange.RunFront(ref ring, notifier, Count, Warm);
                var backLine = peer.StandardOutput.ReadLine() ?? "";
                peer.WaitForExit(30_000);
                if (!front.Ok || peer.ExitCode != 0)
                    throw new InvalidOperationException($"exchange failed: front {front.Failure ?? front.Error.ToString()} mismatches={front.Mismatches}; back {backLine} {stderr.GetAwaiter().GetResult()}");
                long backNotifies = Field(backLine, "notifies");
                return new Run((Count - Warm) / front.SteadySeconds, (front.Notifies + backNotifies) / (double)Count);
            }
            finally
            {
                if (!peer.HasExited) peer.Kill();
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static string CompileBaseline(BenchContext context)
    {
        var source = Path.Combine(context.RepoRoot, "bench", "c", "ring_xproc.c");
        if (!File.Exists(source)) throw new InvalidOperationException($"{source} is missing");
        if (!File.Exists("/usr/include/xen/io/ring.h")) throw new InvalidOperationException("libxen-dev is not installed (make bench-deps)");
        var exe = Path.Combine(context.WorkDirectory, "ring_xproc");
        var (rc, _, err) = Exec("gcc", "-O2", "-Wall", "-o", exe, source);
        if (rc != 0) throw new InvalidOperationException("gcc failed: " + err);
        return exe;
    }

    private static Run RunBaseline(string exe)
    {
        var (rc, output, err) = Exec(exe, Inv(Count), Inv(Warm));
        if (rc != 0) throw new InvalidOperationException($"C baseline failed ({rc}): {err}");
        return new Run(FieldDouble(output, "req_per_s"), FieldDouble(output, "notify_per_req"));
    }

    private static (int Rc, string Out, string Err) Exec(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {file}");
        var err = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output, err.GetAwaiter().GetResult());
    }

    private static string? Raw(string line, string name) =>
        line.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(kv => kv.Split('='))
            .FirstOrDefault(kv => kv.Length == 2 && kv[0] == name)?[1];

    private static long Field(string line, string name) =>
        long.TryParse(Raw(line, name), CultureInfo.InvariantCulture, out long v) ? v : throw new InvalidOperationException($"no {name} in '{line}'");

    private static double FieldDouble(string line, string name) =>
        double.TryParse(Raw(line, name), CultureInfo.InvariantCulture, out double v) ? v : throw new InvalidOperationException($"no {name} in '{line}'");

    private static string Inv<T>(T value) where T : IFormattable => value.ToString(null, CultureInfo.InvariantCulture);
}
