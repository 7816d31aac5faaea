using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace XenIo.Integration.Tests.Netif;

/// <summary>
/// One long iperf3 TCP stream between two network namespaces, watched as it runs: the client's
/// one-second interval lines (flushed as they happen) are read live, so a test can tell that traffic
/// kept moving through a stretch of time, second by second, without waiting for iperf3 to finish.
/// A second that moved nothing, or the stream ending before <see cref="Dispose"/>, is a <see cref="Failure"/>.
/// </summary>
internal sealed partial class IperfStream : IDisposable
{
    private readonly Process _server;
    private readonly Process _client;
    private readonly List<double> _intervals = [];
    private readonly Lock _gate = new();
    private readonly Task _reader;
    private volatile bool _stopping;
    private string? _failure;

    private IperfStream(Process server, Process client)
    {
        _server = server;
        _client = client;
        _reader = Task.Run(ReadAsync);
    }

    /// <summary>Starts the server in <paramref name="serverNetns"/> on <paramref name="address"/> and a client for up to ten minutes in <paramref name="clientNetns"/>.</summary>
    public static IperfStream Start(string serverNetns, string clientNetns, string address)
    {
        var server = Process.Start(new ProcessStartInfo("ip", ["netns", "exec", serverNetns, "iperf3", "-s", "-1", "-B", address])
            { RedirectStandardOutput = true, RedirectStandardError = true })!;
        // The server needs a moment to listen; the client retries nothing.
        Thread.Sleep(300);
        var client = Process.Start(new ProcessStartInfo("ip", ["netns", "exec", clientNetns, "iperf3", "-c", address, "-t", "600", "-i", "1", "-f", "m", "--forceflush"])
            { RedirectStandardOutput = true, RedirectStandardError = true })!;
        return new IperfStream(server, client);
    }

    /// <summary>Mbit/s of each second so far.</summary>
    public IReadOnlyList<double> Intervals
    {
        get { lock (_gate) return [.. _intervals]; }
    }

    public string? Failure
    {
        get { lock (_gate) return _failure; }
    }

    /// <summary>Waits until <paramref name="count"/> seconds have been reported; throws with what iperf3 said if the stream failed first.</summary>
    public async Task WaitForIntervalsAsync(int count, TimeSpan limit)
    {
        var deadline = DateTime.UtcNow + limit;
        while (Intervals.Count < count)
        {
            if (Failure is { } failure) throw new InvalidOperationException(failure);
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"iperf3 reported {Intervals.Count} seconds, waited for {count}");
            await Task.Delay(50);
        }
    }

    // "[  5]   3.00-4.00   sec  1117 MBytes  9370 Mbits/sec    0    393 KBytes"
    [GeneratedRegex(@"^\[\s*\d+\]\s+([\d.]+)-([\d.]+)\s+sec\s+([\d.]+)\s+\w*Bytes\s+([\d.]+)\s+Mbits/sec")]
    private static partial Regex IntervalLine();

    private async Task ReadAsync()
    {
        var seen = new List<string>();
        while (await _client.StandardOutput.ReadLineAsync() is { } line)
        {
            seen.Add(line);
            var m = IntervalLine().Match(line);
            if (!m.Success) continue;
            var transferred = double.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture);
            var mbits = double.Parse(m.Groups[4].Value, CultureInfo.InvariantCulture);
            lock (_gate)
            {
                _intervals.Add(mbits);
                if (transferred <= 0 && _failure is null) _failure = $"iperf3 moved nothing in {m.Groups[1].Value}-{m.Groups[2].Value} s";
            }
        }
        if (_stopping) return;
        var error = await _client.StandardError.ReadToEndAsync();
        lock (_gate) _failure ??= $"iperf3 ended before the test stopped it:\n{string.Join('\n', seen)}\n{error}";
    }

    public void Dispose()
    {
        _stopping = true;
        foreach (var p in new[] { _client, _server })
        {
            try { p.Kill(entireProcessTree: true); }
            catch (InvalidOperationException) { }
            p.WaitForExit(10_000);
            p.Dispose();
        }
        _reader.Wait(TimeSpan.FromSeconds(10));
    }
}
