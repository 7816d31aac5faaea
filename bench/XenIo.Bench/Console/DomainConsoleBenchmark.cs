using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using XenIo.Consoled;
using XenIo.Consoled.Domains;
using XenIo.Consoled.Rings;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Domains.Cgroups;
using XenIo.Hypervisor.Domains.Hyperd;
using XenIo.Hypervisor.Domains.Spawn;
using XenIo.Hypervisor.Hypercalls;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;
using XenIo.Hypervisor.Store.Transports;

namespace XenIo.Bench.Consoles;

/// <summary>
/// A real domain's console end to end: hyperd's core and xenstored in-process, a NativeAOT guest agent
/// whose init is /bin/sh on the PV console ring, consoled's domain wiring (map, bind, register) and a
/// raw TCP viewer. Keystroke to echo (viewer → consoled → <c>in</c> → agent → pty → tty echo → agent →
/// <c>out</c> → consoled → viewer), and bulk output of the guest's shell with the rate limit off (the
/// path's capacity; the default limit caps a guest at 640 KB/s). Baseline: the same echo through a
/// local pty (<c>socat PTY</c> with <c>cat</c>).
/// </summary>
public sealed class DomainConsoleBenchmark : ISystemBenchmark
{
    private const int Keystrokes = 300;
    private const int BulkBytes = 8 * 1024 * 1024;
    private const string EchoKey = "console.domain_echo_ms.p50";
    private const string BulkKey = "console.domain_output_mbps";

    public string Name => "console-domain";

    public async Task RunAsync(BenchContext context, CancellationToken cancellationToken)
    {
        if (Environment.UserName != "root")
        {
            context.Unavailable(EchoKey, "needs root (namespaces, cgroups)");
            return;
        }
        var agent = Path.Combine(context.RepoRoot, "bin", "lib", "xenio-guest");
        if (!File.Exists(agent))
        {
            context.Unavailable(EchoKey, "no NativeAOT agent in bin/lib: run make build");
            return;
        }
        var dir = Path.Combine(context.WorkDirectory, "console-domain");
        Directory.CreateDirectory(dir);
        var names = new KernelNames($"benchcon{Environment.ProcessId % 100000}");
        using var host = new CoreHost(dir, budgetPages: 64L * 256);
        await using var listener = new XenstoreSocketListener(new Xenstored(mapper: new XenstoreDomainMapper(host)), XenstoreSocketListener.PathUnder(dir));
        await using var dom0 = await XenstoreClient.ConnectAsync(listener.SocketPath, cancellationToken);
        await using var consoledStore = await XenstoreClient.ConnectAsync(listener.SocketPath, cancellationToken);
        using var hypercalls = HypercallClient.Connect(host.HypercallSocketPath);
        var options = new ConsoledOptions { RawPorts = true, RateLimit = RateLimit.Unlimited };
        options.Log.Directory = Path.Combine(dir, "logs");
        options.Log.MaxBytes = 64 * 1024 * 1024;
        using var service = new ConsoledService(options, NullLoggerFactory.Instance);
        await service.StartAsync(cancellationToken);
        var manager = new DomainManager(host, dom0, new AgentSpawner(CgroupLayout.Detect(), names),
            new DomainManagerOptions { AgentCommand = [agent], HiddenPaths = [dir], StopTimeoutMs = 100 });
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var domains = new XenDomainConsoles(service, consoledStore, hypercalls, NullLogger.Instance);
        var serving = Task.Run(() => domains.RunAsync(stop.Token), CancellationToken.None);
        try
        {
            var record = await manager.CreateAsync(new DomainConfig { Name = "con", MemoryMiB = 16, Init = ["/bin/sh"] }, cancellationToken);
            DomainConsole? console = null;
            for (int i = 0; i < 200 && (console = domains.Find("con")) is null; i++) await Task.Delay(50, cancellationToken);
            if (console?.Ports.RawPort is not { } raw)
            {
                context.Unavailable(EchoKey, "consoled did not serve the domain's console");
                return;
            }
            using var viewer = await BenchConsoled.AttachAsync(raw);
            var echo = await EchoAsync(viewer, cancellationToken);
            var baseline = await PtyBaselineAsync(cancellationToken);
            context.ReportAtMost(EchoKey, echo[echo.Length / 2], "ms", 5,
                $"{Keystrokes} keystrokes into a real guest's shell, p99 {echo[echo.Length * 99 / 100]:F2} ms; " +
                (baseline is { } b ? $"baseline (echo through a local pty, socat + cat) p50 {b:F3} ms" : "no socat for the pty baseline"));
            var mbps = await BulkAsync(viewer, cancellationToken);
            context.Report(BulkKey, mbps, "Mbit/s", $"{BulkBytes >> 20} MiB printed by the guest's shell (head -c | tr) to one raw viewer, rate limit off");
            await manager.DestroyAsync("con");
            _ = record;
        }
        finally
        {
            await stop.CancelAsync();
            try { await serving; }
            catch (Exception e) when (e is OperationCanceledException or IOException) { }
            await domains.DisposeAsync();
            await manager.DisposeAsync();
            await service.StopAsync(CancellationToken.None);
            DomainCgroup.RemoveLeftovers(CgroupLayout.Detect(), names);
        }
    }

    /// <summary>One character at a time, waiting for the tty's echo of each; returns sorted milliseconds.</summary>
    private static async Task<double[]> EchoAsync(Socket viewer, CancellationToken cancellationToken)
    {
        var buffer = new byte[4096];
        var times = new List<double>();
        // Let the shell print its prompt and settle.
        await viewer.SendAsync("\r"u8.ToArray(), cancellationToken);
        await Task.Delay(300, cancellationToken);
        while (viewer.Available > 0) await viewer.ReceiveAsync(buffer, cancellationToken);
        var key = new byte[1];
        for (int i = 0; i < Keystrokes; i++)
        {
            key[0] = (byte)('a' + i % 26);
            var sw = Stopwatch.StartNew();
            await viewer.SendAsync(key, cancellationToken);
            bool seen = false;
            while (!seen)
            {
                int n = await viewer.ReceiveAsync(buffer, cancellationToken);
                if (n == 0) throw new IOException("consoled closed the console");
                seen = Array.IndexOf(buffer, key[0], 0, n) >= 0;
            }
            times.Add(sw.Elapsed.TotalMilliseconds);
            if (i % 60 == 59)
            {
                await viewer.SendAsync(new byte[] { 0x15 }, cancellationToken); // Ctrl-U: the line never grows long
                await Task.Delay(50, cancellationToken);
                while (viewer.Available > 0) await viewer.ReceiveAsync(buffer, cancellationToken);
            }
        }
        await viewer.SendAsync(new byte[] { 0x15 }, cancellationToken);
        times.Sort();
        return [.. times];
    }

    /// <summary>The guest's shell prints <see cref="BulkBytes"/> bytes; Mbit/s until the end marker arrives.</summary>
    private static async Task<double> BulkAsync(Socket viewer, CancellationToken cancellationToken)
    {
        var buffer = new byte[65536];
        await Task.Delay(100, cancellationToken);
        while (viewer.Available > 0) await viewer.ReceiveAsync(buffer, cancellationToken);
        var marker = "bulk-done-49"u8.ToArray(); // the command line says $((7*7)), so only the output matches
        var sw = Stopwatch.StartNew();
        await viewer.SendAsync(Encoding.ASCII.GetBytes($"head -c {BulkBytes} /dev/zero | tr '\\0' x; echo; echo bulk-done-$((7*7))\r"), cancellationToken);
        var tail = new List<byte>();
        long total = 0;
        while (true)
        {
            int n = await viewer.ReceiveAsync(buffer, cancellationToken);
            if (n == 0) throw new IOException("consoled closed the console");
            total += n;
            tail.AddRange(buffer.AsSpan(0, n).ToArray());
            if (tail.Count > 4096) tail.RemoveRange(0, tail.Count - 64);
            if (tail.ToArray().AsSpan().IndexOf(marker) >= 0) break;
        }
        return total * 8 / sw.Elapsed.TotalSeconds / 1e6;
    }

    /// <summary>p50 of the same one-key echo through a local pty: socat gives cat a pty and a TCP side.</summary>
    private static async Task<double?> PtyBaselineAsync(CancellationToken cancellationToken)
    {
        var socat = new[] { "/usr/bin/socat", "/bin/socat" }.FirstOrDefault(File.Exists);
        if (socat is null) return null;
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        int port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        using var p = Process.Start(new ProcessStartInfo(socat, [$"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr", "EXEC:cat,pty,echo=1"])
            { UseShellExecute = false })!;
        try
        {
            using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            for (int i = 0; ; i++)
            {
                try
                {
                    await s.ConnectAsync(IPAddress.Loopback, port, cancellationToken);
                    break;
                }
                catch (SocketException) when (i < 100)
                {
                    await Task.Delay(20, cancellationToken);
                }
            }
            var times = await EchoAsync(s, cancellationToken);
            return times[times.Length / 2];
        }
        finally
        {
            p.Kill();
            await p.WaitForExitAsync(CancellationToken.None);
        }
    }
}
