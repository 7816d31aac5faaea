using System.Diagnostics;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Hypercalls;

namespace XenIo.Bench.Core;

/// <summary>
/// evtchn.xproc.rtt_us_p50/p99: a notify round trip between two processes. This process hosts the
/// core services and plays dom0; a guest process (the test peer's core-evtchn-echo role, holding only
/// its handed-over descriptors) allocates a port for dom0 and echoes every notification.
/// </summary>
public sealed class EventChannelRttBenchmark : ISystemBenchmark
{
    private const int Warmup = 2_000;
    private const int Samples = 20_000;

    public string Name => "evtchn-rtt";

    public async Task RunAsync(BenchContext context, CancellationToken cancellationToken)
    {
        string peer = Path.Combine(AppContext.BaseDirectory, "XenIo.TestPeer.dll");
        if (!File.Exists(peer))
        {
            context.Unavailable("evtchn.xproc.rtt_us_p50", "XenIo.TestPeer.dll is not beside the bench runner");
            return;
        }
        string run = Path.Combine(context.WorkDirectory, $"core-{Environment.ProcessId}");
        try
        {
            await MeasureAsync(context, peer, run, cancellationToken);
        }
        finally
        {
            try { Directory.Delete(run, recursive: true); } catch (IOException) { }
        }
    }

    private static async Task MeasureAsync(BenchContext context, string peer, string run, CancellationToken cancellationToken)
    {
        using var host = new CoreHost(run, budgetPages: 4096);
        var domain = host.CreateDomain(1, "echo", frames: 64, grantFrames: 4);
        string handoff = Path.Combine(run, "d1.handoff");
        var handing = DomainHandoff.HandOffAsync(domain, handoff, cancellationToken);

        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardInput = true, UseShellExecute = false };
        foreach (var a in new[] { peer, "core-evtchn-echo", handoff }) psi.ArgumentList.Add(a);
        using var echo = Process.Start(psi) ?? throw new InvalidOperationException("could not start the echo guest");
        try
        {
            await handing.WaitAsync(TimeSpan.FromSeconds(60), cancellationToken);
            string? line = await echo.StandardOutput.ReadLineAsync(cancellationToken).AsTask().WaitAsync(TimeSpan.FromSeconds(60), cancellationToken);
            if (line is null || !line.StartsWith("port ", StringComparison.Ordinal)) throw new InvalidOperationException($"echo guest said '{line}'");

            using var dom0 = HypercallClient.Connect(host.HypercallSocketPath);
            using var channel = dom0.BindInterdomain(1, uint.Parse(line[5..]));
            channel.Wait(0); // the pending-once of bind
            var rtts = new double[Samples];
            for (int i = -Warmup; i < Samples; i++)
            {
                long start = Stopwatch.GetTimestamp();
                channel.Notify();
                if (!channel.Wait(10_000) || channel.PeerClosed) throw new InvalidOperationException("echo guest stopped answering");
                if (i >= 0) rtts[i] = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
            }
            Array.Sort(rtts);
            context.Report("evtchn.xproc.rtt_us_p50", rtts[Samples / 2], "us", $"{Samples} notify round trips, socketpair endpoints, poll+recv");
            context.Report("evtchn.xproc.rtt_us_p99", rtts[Samples * 99 / 100], "us");
        }
        finally
        {
            if (!echo.WaitForExit(5_000)) echo.Kill();
        }
    }
}
