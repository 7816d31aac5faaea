using System.Globalization;
using System.Text.Json;

namespace XenIo.Bench.Peers;

/// <summary>One iperf3 TCP stream from one namespace to another, as every tap2tap path is measured.</summary>
public static class Iperf
{
    public const int Seconds = 5;

    /// <summary>Gbit/s received by the server in <paramref name="server"/> (listening on <paramref name="address"/>) from a client in <paramref name="client"/>.</summary>
    public static double TcpGbps(BenchNamespace client, BenchNamespace server, string address)
    {
        using var processes = new PeerProcesses();
        // The path must carry a frame before we time it (ARP, OVS's first upcall, VDE's learning).
        PeerProcesses.WaitFor(() =>
        {
            try
            {
                client.Exec("ping", "-c", "1", "-W", "1", address);
                return true;
            }
            catch (InvalidOperationException)
            {
                return false;
            }
        }, $"ping {address} from {client.Name}", timeoutMs: 15_000);
        var s = server.Start(processes, "iperf3", "-s", "-1", "-B", address);
        PeerProcesses.WaitFor(() => server.Exec("ss", "-Htln", "src", address).Contains(':'), $"iperf3 server on {address}", timeoutMs: 5_000);
        PeerProcesses.EnsureRunning(s, "iperf3 -s");
        var output = client.Exec("iperf3", "-c", address, "-t", Seconds.ToString(CultureInfo.InvariantCulture), "-J", "--connect-timeout", "3000");
        return Parse(output);
    }

    /// <summary>Bits per second received, from iperf3's JSON report, in Gbit/s.</summary>
    public static double Parse(string json)
    {
        using var doc = JsonDocument.Parse(json);
        if (doc.RootElement.TryGetProperty("error", out var error)) throw new InvalidOperationException($"iperf3: {error.GetString()}");
        return doc.RootElement.GetProperty("end").GetProperty("sum_received").GetProperty("bits_per_second").GetDouble() / 1e9;
    }
}
