using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Xunit;
using static XenIo.Integration.Tests.Netback.VifFrames;

namespace XenIo.Integration.Tests.Netback;

/// <summary>
/// `xenio netback` as its own process serving vifs of agent-less domains: frames cross, the vif ports
/// show in `xenio switch show` and GET /vifs, and after a SIGKILL and restart the frontends are sent
/// through a reconnect and traffic flows again without the domains restarting.
/// </summary>
[Collection("netback-vifs")]
public sealed class NetbackDaemonVifTests
{
    private const string MacA = "00:16:3e:00:01:0a";
    private const string MacB = "00:16:3e:00:01:0b";
    private static string Xenio => Path.Combine(AppContext.BaseDirectory, "xenio.dll");

    [Fact]
    public async Task The_netback_daemon_serves_vifs_lists_them_and_survives_a_sigkill()
    {
        await using var h = await VifHarness.StartAsync(inProcessNetback: false);
        var log = new StringBuilder();
        var netback = StartNetback(h.Dir, log);
        try
        {
            var (ra, ga) = await h.CreateGuestAsync("a", MacA);
            var (rb, gb) = await h.CreateGuestAsync("b", MacB);
            var fa = h.Frontend(ra, ga, split: true);
            var fb = h.Frontend(rb, gb, split: false);
            await ConnectAsync(h, fa, log);
            await ConnectAsync(h, fb, log);
            fa.PostRx();
            fb.PostRx();
            var rng = new Random(11);
            Exchange(fa, fb, rng);

            var show = Cli($"switch show --run-dir {h.Dir}");
            Assert.Contains($"Port vif{ra.Domid}.0: vif, up", show);
            Assert.Contains($"Port vif{rb.Domid}.0: vif, up", show);
            using (var vifs = JsonDocument.Parse(await NetbackHttp.GetAsync(Path.Combine(h.Dir, "netback.sock"), "/vifs")))
            {
                var a = vifs.RootElement.GetProperty("vifs").EnumerateArray().Single(v => v.GetProperty("domid").GetInt32() == ra.Domid);
                Assert.True(a.GetProperty("connected").GetBoolean());
                Assert.Equal("Connected", a.GetProperty("backend_state").GetString());
                Assert.Equal(MacA, a.GetProperty("mac").GetString());
                Assert.True(a.GetProperty("rx_packets").GetInt64() >= 10);
                Assert.Equal(0, a.GetProperty("vif").GetProperty("failures").GetInt64());
            }

            // SIGKILL: nothing is cleaned up; the restarted daemon finds the vifs Connected.
            netback.Kill();
            await netback.WaitForExitAsync();
            netback = StartNetback(h.Dir, log);
            foreach (var f in new[] { fa, fb })
            {
                await WaitStateAsync(h, f.Domid, 2, log);
                f.Reset();
                await ConnectAsync(h, f, log);
                f.PostRx();
            }
            Exchange(fa, fb, rng);
        }
        finally
        {
            if (!netback.HasExited)
            {
                netback.Kill();
                await netback.WaitForExitAsync();
            }
        }
    }

    private static void Exchange(TestPeer.Netback.TestNetfront fa, TestPeer.Netback.TestNetfront fb, Random rng)
    {
        for (var i = 0; i < 20; i++)
        {
            var (from, to, dst, src) = i % 2 == 0 ? (fa, fb, MacB, MacA) : (fb, fa, MacA, MacB);
            var frame = Random(dst, src, rng.Next(60, 1515), rng);
            Send(from, frame);
            Assert.Equal(frame, Receive(to)!.Value.Frame);
        }
    }

    private static async Task WaitStateAsync(VifHarness h, int domid, int state, StringBuilder log)
    {
        try
        {
            await h.WaitBackendStateAsync(domid, state);
        }
        catch (TimeoutException e)
        {
            lock (log) throw new TimeoutException($"{e.Message}\nnetback:\n{log}");
        }
    }

    private static async Task ConnectAsync(VifHarness h, TestPeer.Netback.TestNetfront front, StringBuilder log)
    {
        await WaitStateAsync(h, front.Domid, 2, log);
        await h.ConnectAsync(front);
    }

    private static Process StartNetback(string dir, StringBuilder log)
    {
        var socket = Path.Combine(dir, "netback.sock");
        if (File.Exists(socket)) File.Delete(socket);
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Xenio);
        foreach (var a in new[] { "netback", "--run-dir", dir }) psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        var deadline = DateTime.UtcNow + VifHarness.Limit;
        while (!File.Exists(socket))
        {
            if (p.HasExited || DateTime.UtcNow > deadline) lock (log) throw new InvalidOperationException($"netback did not start:\n{log}");
            Thread.Sleep(20);
        }
        return p;
    }

    private static string Cli(string args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Xenio);
        foreach (var a in args.Split(' ')) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, output);
        return output;
    }
}
