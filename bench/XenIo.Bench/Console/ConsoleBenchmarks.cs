using XenIo.Tests;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using XenIo.Consoled;
using XenIo.Consoled.Rings;

namespace XenIo.Bench.Consoles;

/// <summary>consoled started for a benchmark, with in-process guests and a scratch log directory.</summary>
internal sealed class BenchConsoled(string workDirectory) : LocalConsoled(Path.Combine(workDirectory, $"console-{Guid.NewGuid():N}"), o =>
{
    o.Log.MaxBytes = 64 * 1024 * 1024;
    o.Log.Rotations = 1;
    o.Multiplexer.MaxViewersPerConsole = 64;
})
{
    /// <summary>Connects to a raw port and waits for the attach notice.</summary>
    public static async Task<Socket> AttachAsync(int port)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(IPAddress.Loopback, port);
        var seen = new StringBuilder();
        var buffer = new byte[4096];
        while (!seen.ToString().Contains("; ^Ec", StringComparison.Ordinal))
        {
            int n = await socket.ReceiveAsync(buffer);
            if (n == 0) throw new IOException("consoled closed the connection");
            seen.Append(Encoding.Latin1.GetString(buffer, 0, n));
        }
        // The attach notice ends with "]\r\n"; anything after it is guest output (none yet).
        return socket;
    }
}

/// <summary>
/// Guest to viewer throughput: an in-process guest prints as fast as its console ring allows, through
/// consoled (ring, output buffer, log, scrollback, per-viewer queues, loopback TCP) to 1 or 10 raw
/// viewers. Reported per viewer, beside the same bytes over a bare loopback TCP connection in 2 KiB
/// writes (the ring's size) as the baseline.
/// </summary>
public sealed class ConsoleThroughputBenchmark : ISystemBenchmark
{
    private const int Total = 64 * 1024 * 1024;

    public string Name => "console";

    public async Task RunAsync(BenchContext context, CancellationToken cancellationToken)
    {
        double baseline = await BaselineAsync(cancellationToken);
        context.Report("console.baseline.tcp_2k_mbps", baseline, "Mbit/s", "bare loopback TCP, 2 KiB writes");
        foreach (int viewers in new[] { 1, 10 })
        {
            var (mbps, dropped) = await MeasureAsync(context.WorkDirectory, viewers, cancellationToken);
            context.Report($"console.throughput_mbps.v{viewers}", mbps, "Mbit/s",
                $"per viewer, {Total >> 20} MiB guest output, about {dropped} bytes dropped for slow viewers, ratio to baseline {mbps / baseline:F3}");
        }
        await new ConsoleLatencyBenchmark().RunAsync(context, cancellationToken);
    }

    private static async Task<(double Mbps, long Dropped)> MeasureAsync(string work, int viewerCount, CancellationToken cancellationToken)
    {
        await using var consoled = new BenchConsoled(work);
        var (guest, reg) = consoled.AddGuest($"bench{viewerCount}");
        var sockets = new List<Socket>();
        for (int i = 0; i < viewerCount; i++) sockets.Add(await BenchConsoled.AttachAsync(reg.Ports.RawPort!.Value));
        var sentinel = "\u0001END\u0001"u8.ToArray();
        var start = Stopwatch.GetTimestamp();
        var readers = sockets.Select(s => Task.Run(() => DrainUntilAsync(s, sentinel, start, cancellationToken))).ToArray();

        var chunk = new byte[2048];
        new Random(1).NextBytes(chunk);
        for (int i = 0; i < chunk.Length; i++) chunk[i] = (byte)('a' + chunk[i] % 26); // never the sentinel
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        limit.CancelAfter(TimeSpan.FromMinutes(2));
        for (int sent = 0; sent < Total; sent += chunk.Length) await guest.WriteAsync(chunk, limit.Token);
        // A viewer whose queue is full when the sentinel passes drops it whole: repeat it until all have one.
        var all = Task.WhenAll(readers);
        while (!all.IsCompleted)
        {
            await guest.WriteAsync(sentinel, limit.Token);
            await Task.WhenAny(all, Task.Delay(20, limit.Token));
        }
        var results = await all;
        foreach (var s in sockets) s.Dispose();
        double mbps = results.Average(r => r.Bytes * 8 / r.Seconds / 1e6);
        long dropped = Math.Max(0, (long)Total * viewerCount - results.Sum(r => r.Bytes));
        return (mbps, dropped);
    }

    /// <summary>Reads until the sentinel; returns the bytes received and the seconds since <paramref name="start"/>.</summary>
    private static async Task<(long Bytes, double Seconds)> DrainUntilAsync(Socket socket, byte[] sentinel, long start, CancellationToken cancellationToken)
    {
        var buffer = new byte[256 * 1024];
        var boundary = new byte[2 * sentinel.Length];
        int carry = 0;
        long total = 0;
        while (true)
        {
            int n = await socket.ReceiveAsync(buffer, cancellationToken);
            if (n == 0) return (total, Stopwatch.GetElapsedTime(start).TotalSeconds);
            total += n;
            // The sentinel may straddle two reads: look at the end of the last one joined to this one's start.
            int head = Math.Min(n, sentinel.Length);
            buffer.AsSpan(0, head).CopyTo(boundary.AsSpan(carry));
            if (buffer.AsSpan(0, n).IndexOf(sentinel) >= 0 || boundary.AsSpan(0, carry + head).IndexOf(sentinel) >= 0)
                return (total, Stopwatch.GetElapsedTime(start).TotalSeconds);
            carry = Math.Min(n, sentinel.Length - 1);
            buffer.AsSpan(n - carry, carry).CopyTo(boundary);
        }
    }

    private static async Task<double> BaselineAsync(CancellationToken cancellationToken)
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(listener.LocalEndPoint!, cancellationToken);
        using var server = await listener.AcceptAsync(cancellationToken);
        var chunk = new byte[2048];
        var clock = Stopwatch.StartNew();
        var reader = Task.Run(async () =>
        {
            var buffer = new byte[256 * 1024];
            long got = 0;
            while (got < Total) got += await client.ReceiveAsync(buffer, cancellationToken);
        }, cancellationToken);
        for (int sent = 0; sent < Total; sent += chunk.Length) await server.SendAsync(chunk, cancellationToken);
        await reader;
        return (double)Total * 8 / clock.Elapsed.TotalSeconds / 1e6;
    }
}

/// <summary>
/// p99 guest-to-viewer latency with 100 busy consoles: each guest prints a stamped line every 10 ms
/// (10,000 lines/s in all) for 5 s; one raw viewer per console reads them back over loopback TCP.
/// </summary>
public sealed class ConsoleLatencyBenchmark
{
    private const int Domains = 100;
    private static readonly TimeSpan Duration = TimeSpan.FromSeconds(5);

    public async Task RunAsync(BenchContext context, CancellationToken cancellationToken)
    {
        await using var consoled = new BenchConsoled(context.WorkDirectory);
        var guests = new List<LocalConsoleFrontend>();
        var sockets = new List<Socket>();
        for (int d = 0; d < Domains; d++)
        {
            var (guest, reg) = consoled.AddGuest($"dom{d}");
            guests.Add(guest);
            sockets.Add(await BenchConsoled.AttachAsync(reg.Ports.RawPort!.Value));
        }
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var latencies = new List<double>[Domains];
        var readers = new Task[Domains];
        for (int d = 0; d < Domains; d++)
        {
            latencies[d] = [];
            int index = d;
            readers[d] = Task.Run(() => ReadStampsAsync(sockets[index], latencies[index], stop.Token));
        }
        var writers = guests.Select(g => Task.Run(() => PrintStampsAsync(g, stop.Token))).ToArray();
        await Task.Delay(Duration, cancellationToken);
        await stop.CancelAsync();
        await Task.WhenAll(writers.Select(t => t.ContinueWith(_ => { }, TaskScheduler.Default)));
        foreach (var s in sockets) s.Dispose();
        await Task.WhenAll(readers.Select(t => t.ContinueWith(_ => { }, TaskScheduler.Default)));
        var all = latencies.SelectMany(l => l).Order().ToArray();
        if (all.Length == 0)
        {
            context.Unavailable("console.latency_ms_p99.d100", "no line came back");
            return;
        }
        double p99 = all[(int)Math.Min(all.Length - 1, Math.Ceiling(all.Length * 0.99) - 1)];
        context.Report("console.latency_ms_p99.d100", p99, "ms",
            $"{all.Length} lines from {Domains} guests at 100 lines/s each; p50 {all[all.Length / 2]:F3} ms");
    }

    private static async Task PrintStampsAsync(LocalConsoleFrontend guest, CancellationToken cancellationToken)
    {
        var line = new byte[64];
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                int n = Encoding.ASCII.GetBytes($"T{Stopwatch.GetTimestamp()}\n", line);
                await guest.WriteAsync(line.AsMemory(0, n), cancellationToken);
                await Task.Delay(10, cancellationToken);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private static async Task ReadStampsAsync(Socket socket, List<double> latencies, CancellationToken cancellationToken)
    {
        var buffer = new byte[16 * 1024];
        var pending = new StringBuilder();
        try
        {
            while (true)
            {
                int n = await socket.ReceiveAsync(buffer, cancellationToken);
                if (n == 0) return;
                long now = Stopwatch.GetTimestamp();
                pending.Append(Encoding.Latin1.GetString(buffer, 0, n));
                var text = pending.ToString();
                int last = text.LastIndexOf('\n');
                if (last < 0) continue;
                foreach (var l in text[..last].Split('\n'))
                {
                    if (l.Length > 1 && l[0] == 'T' && long.TryParse(l.AsSpan(1), NumberStyles.None, CultureInfo.InvariantCulture, out long stamp))
                        latencies.Add(Stopwatch.GetElapsedTime(stamp, now).TotalMilliseconds);
                }
                pending.Clear().Append(text[(last + 1)..]);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
    }
}
