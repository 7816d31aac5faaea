using System.Diagnostics;
using XenIo.Hypervisor.Domains;
using XenIo.TestPeer.Netback;
using XenIo.Tests;
using Xunit;
using Xunit.Abstractions;
using static XenIo.Integration.Tests.Netback.VifFrames;

namespace XenIo.Integration.Tests.Netback;

/// <summary>
/// A hostile netfront in another OS process, holding only an agent-less domain's descriptors, sends
/// over a million random and malformed TX slots and bad RX postings, ending each session with a
/// protocol violation; netback disconnects that vif every time (Closing, one log line), lets it
/// reconnect, never throws, and two other vifs keep exchanging frames, every byte checked, throughout.
/// </summary>
[Collection("netback-vifs")]
public sealed class HostileFrontendTests(ITestOutputHelper output)
{
    private const string MacEvil = "00:16:3e:00:00:66";
    private const string MacB = "00:16:3e:00:00:0b";
    private const string MacC = "00:16:3e:00:00:0c";
    private const long Total = 1_000_000;
    private const long PerSession = 50_000;

    [Fact]
    public async Task A_million_hostile_requests_disconnect_only_that_vif_while_two_others_keep_forwarding()
    {
        await using var h = await VifHarness.StartAsync();
        var (rb, gb) = await h.CreateGuestAsync("b", MacB);
        var (rc, gc) = await h.CreateGuestAsync("c", MacC);
        var fb = h.Frontend(rb, gb, split: true);
        var fc = h.Frontend(rc, gc, split: false);
        await h.ConnectAsync(fb);
        await h.ConnectAsync(fc);
        fb.PostRx();
        fc.PostRx();

        var evil = await h.Manager.CreateAsync(new DomainConfig
        {
            Name = "evil", MemoryMiB = 8, Vcpus = 1, Vifs = [new Hypervisor.Domains.VifConfig { Devid = 0, Mac = MacEvil, Ip = "198.18.0.66" }],
        });
        var handoff = Path.Combine(Path.GetTempPath(), $"xenio-evil-{Guid.NewGuid():N}"[..28] + ".sock");
        var giving = DomainHandoff.HandOffAsync(evil.Hosted, handoff);
        while (!File.Exists(handoff)) await Task.Delay(5);
        using var peer = Peer.Start("netback-hostile-frontend", handoff, (Math.Max(evil.StoreFrame, evil.ConsoleFrame) + 1).ToString(), "4242",
            MacEvil.Replace(":", ""), "1");
        var stderr = peer.StandardError.ReadToEndAsync();
        await giving.WaitAsync(VifHarness.Limit);

        // Honest traffic between b and c for the whole run, on its own thread, every byte checked.
        using var stopGood = new CancellationTokenSource();
        long goodFrames = 0;
        string? goodFailure = null;
        var good = Task.Run(() =>
        {
            var rng = new Random(77);
            try
            {
                while (!stopGood.IsCancellationRequested)
                {
                    var forward = goodFrames % 2 == 0;
                    // Every tenth is a broadcast: the hostile vif gets it too, into its bad RX postings.
                    var frame = Random(goodFrames % 10 == 0 ? "ff:ff:ff:ff:ff:ff" : forward ? MacC : MacB, forward ? MacB : MacC, rng.Next(60, 1515), rng);
                    Send(forward ? fb : fc, frame);
                    var got = Receive(forward ? fc : fb, 30_000, f => f.AsSpan(6, 6).SequenceEqual(frame.AsSpan(6, 6)));
                    if (got is null || !got.Value.Frame.SequenceEqual(frame))
                    {
                        goodFailure = got is null ? "a frame between b and c was lost" : "a frame between b and c changed";
                        return;
                    }
                    Interlocked.Increment(ref goodFrames);
                }
            }
            catch (Exception e)
            {
                goodFailure = e.ToString();
            }
        });

        try
        {
            await RunAsync(h, evil, peer, stderr, () => Interlocked.Read(ref goodFrames), () => goodFailure, rb.Domid, rc.Domid, output);
        }
        finally
        {
            // The guests' memory goes with the harness: the honest traffic must stop first.
            await stopGood.CancelAsync();
            await good.WaitAsync(VifHarness.Limit);
            if (!peer.HasExited) peer.Kill();
        }
        Assert.Null(goodFailure);
    }

    private static async Task RunAsync(VifHarness h, Hypervisor.Domains.Hyperd.DomainRecord evil, Process peer, Task<string> stderr,
        Func<long> goodFrames, Func<string?> goodFailure, int domB, int domC, ITestOutputHelper output)
    {
        var fe = VifHarness.FrontendPath(evil.Domid);
        long sent = 0;
        var sessions = 0;
        var goodAtStart = goodFrames();
        while (sent < Total)
        {
            var keys = await ReadLineAsync(peer, stderr);
            Assert.StartsWith("KEYS ", keys);
            await h.Dom0.TransactAsync(async tx =>
            {
                foreach (var kv in keys[5..].Split(';'))
                    await h.Dom0.WriteAsync($"{fe}/{kv[..kv.IndexOf('=')]}", kv[(kv.IndexOf('=') + 1)..], tx);
            });
            await h.WaitBackendStateAsync(evil.Domid, 2);
            await h.Dom0.WriteAsync($"{fe}/state", "4");
            await h.WaitBackendStateAsync(evil.Domid, 4);
            var kind = sessions % HostileNetfrontRole.FatalKinds.Length;
            await peer.StandardInput.WriteLineAsync($"GO {kind} {PerSession}");
            await peer.StandardInput.FlushAsync();
            var report = (await ReadLineAsync(peer, stderr)).Split(' ');
            Assert.Equal("SENT", report[0]);
            Assert.True(report[2] == "closed", $"session {sessions} ({HostileNetfrontRole.FatalKinds[kind]}): netback did not disconnect the vif; log:\n{string.Join('\n', h.Log)}");
            sent += long.Parse(report[1]);
            await h.WaitBackendStateAsync(evil.Domid, 5);
            sessions++;

            // The frontend starts over, as netfront does after its backend closed.
            await h.Dom0.WriteAsync($"{fe}/state", "6");
            await h.WaitBackendStateAsync(evil.Domid, 6);
            await h.Dom0.WriteAsync($"{fe}/state", "1");
            await peer.StandardInput.WriteLineAsync("RESET");
            await peer.StandardInput.FlushAsync();
        }
        // Read before the peer goes: its domain crashes with it and the toolstack removes the vif.
        var port = h.Port(evil.Domid);
        await ReadLineAsync(peer, stderr); // the next session's keys
        await peer.StandardInput.WriteLineAsync("QUIT");
        await peer.StandardInput.FlushAsync();
        Assert.True(peer.WaitForExit(30_000));
        Assert.Equal(0, peer.ExitCode);

        // b and c kept forwarding while all that happened, and still do.
        var goodDuring = goodFrames() - goodAtStart;
        var deadline = DateTime.UtcNow + VifHarness.Limit;
        var mark = goodFrames();
        while (goodFrames() < mark + 50 && goodFailure() is null && DateTime.UtcNow < deadline) await Task.Delay(10);
        Assert.Null(goodFailure());
        Assert.True(goodDuring > 0, "no frame crossed between b and c during the hostile run");
        Assert.True(goodFrames() >= mark + 50);

        Assert.True(sent >= Total);
        Assert.Equal(sessions, (int)port.Stats.Failures);
        Assert.True(port.Stats.TxBadGrants > 0 && port.Stats.TxMalformed > 0 && port.Stats.TxSpoofDrops > 0 && port.Stats.TxTooManySlots > 0);
        Assert.True(port.Stats.RxBadGrants > 0, "the hostile RX postings were never used");
        Assert.True(port.Stats.EventsRateLimited > 0, "the event storms were served at full speed");
        // One log line per disconnection.
        Assert.Equal(sessions, h.Log.Count(l => l.Contains($"vif vif{evil.Domid}.0 (domain {evil.Domid}): disconnected:")));
        // Each kind of violation was seen for what it is.
        var expected = new Dictionary<string, string>
        {
            ["tx-req-prod-overflow"] = "tx ring: RequestProducer",
            ["twenty-one-slots"] = "a packet of more than 20 slots",
            ["bad-extra-type"] = "invalid extra type",
            ["cross-page"] = "crosses its page",
            ["gso-size-zero"] = "GSO size must not be zero",
            ["rx-req-prod-overflow"] = "rx ring: RequestProducer",
            ["missing-slots"] = "more slots than were published",
        };
        foreach (var kind in HostileNetfrontRole.FatalKinds)
            Assert.True(h.Log.Any(l => l.Contains(expected[kind])), $"{kind}: no '{expected[kind]}' in the log:\n{string.Join('\n', h.Log)}");
        output.WriteLine($"{sent} hostile slots in {sessions} sessions; {goodDuring} honest frames b<->c meanwhile; vif stats: "
            + string.Join(", ", port.Stats.All().Select(kv => $"{kv.Key}={kv.Value}")));
        Assert.True(h.Port(domB).IsConnected && h.Port(domC).IsConnected);
    }

    private static async Task<string> ReadLineAsync(Process peer, Task<string> stderr)
    {
        var line = await peer.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(60));
        if (line is null) throw new InvalidOperationException($"the hostile peer ended: {await stderr}");
        return line;
    }
}
