using System.Diagnostics;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Domains.Cgroups;
using XenIo.Hypervisor.Domains.Spawn;
using XenIo.Integration.Tests.Netif;
using XenIo.TestPeer.Netback;
using XenIo.Tests;
using Xunit;
using Xunit.Abstractions;

namespace XenIo.Integration.Tests.Netback;

/// <summary>
/// A hostile netfront in another OS process, holding only an agent-less domain's descriptors, sends
/// over a million random and malformed TX slots and bad RX postings, ending each session with a
/// protocol violation; netback disconnects that vif every time (Closing, one log line), lets it
/// reconnect and never throws, while two real guests on the same bridge run one iperf3 TCP stream
/// from before the first hostile request to after the last, every second of it moving data.
/// </summary>
[Collection("netback-vifs")]
public sealed class HostileFrontendTests(ITestOutputHelper output)
{
    private const string MacEvil = "00:16:3e:00:00:66";
    private const long Total = 1_000_000;
    private const long PerSession = 50_000;

    [SkippableFact]
    public async Task A_million_hostile_requests_disconnect_only_that_vif_while_iperf3_runs_between_two_guests()
    {
        Requires.Root();
        Requires.Tool("iperf3");
        Requires.Tool("ping");
        Requires.Tool("unshare");
        var agent = RepoBuild.GuestAgent();
        Skip.If(agent is null, RepoBuild.NoGuestAgent);
        var names = new KernelNames($"t{Environment.ProcessId % 100000}hf");
        try
        {
            await using var h = await VifHarness.StartAsync(guests: new VifHarness.GuestAgents(agent!, names));
            await RunWithGuestsAsync(h, names);
        }
        finally
        {
            // A failed run must not leave namespaces or cgroups behind.
            foreach (var ns in NetnsNames.List(names.Prefix)) NetnsNames.Detach(ns);
            DomainCgroup.RemoveLeftovers(CgroupLayout.Detect(), names);
        }
    }

    private async Task RunWithGuestsAsync(VifHarness h, KernelNames names)
    {
        var web = await h.Manager.CreateAsync(Guest("web", "00:16:3e:00:00:0b", "198.18.0.1/24"));
        var client = await h.Manager.CreateAsync(Guest("client", "00:16:3e:00:00:0c", "198.18.0.2/24"));
        await h.WaitBackendStateAsync(web.Domid, 4);
        await h.WaitBackendStateAsync(client.Domid, 4);
        var ping = Netns.RunCode("ip", ["netns", "exec", names.Netns("client"), "ping", "-c", "3", "-i", "0.2", "-W", "5", "198.18.0.1"]);
        Assert.True(ping.Item1 == 0, ping.Item2 + h.GuestLogs());

        var evil = await h.Manager.CreateAgentlessAsync(new DomainConfig
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

        // One iperf3 TCP stream client -> web for the whole run, and broadcasts from web (every port gets
        // them, so the hostile vif's bad RX postings are used).
        using var stream = IperfStream.Start(names.Netns("web"), names.Netns("client"), "198.18.0.1");
        using var broadcasts = Process.Start(new ProcessStartInfo("ip", ["netns", "exec", names.Netns("web"), "ping", "-q", "-b", "-i", "0.05", "198.18.0.255"])
            { RedirectStandardOutput = true, RedirectStandardError = true })!;
        try
        {
            await stream.WaitForIntervalsAsync(2, VifHarness.Limit);
            await RunAsync(h, evil, peer, stderr, stream, web.Domid, client.Domid, output);
        }
        finally
        {
            if (!peer.HasExited) peer.Kill();
            broadcasts.Kill();
        }
        output.WriteLine($"iperf3 during the run, Mbit/s per second: {string.Join(' ', stream.Intervals.Select(i => i.ToString("F0", System.Globalization.CultureInfo.InvariantCulture)))}");
    }

    private static DomainConfig Guest(string name, string mac, string ip) => new()
    {
        Name = name,
        MemoryMiB = 64,
        Init = ["/bin/sleep", "1000"],
        Vifs = [new Hypervisor.Domains.VifConfig { Devid = 0, Mac = mac, Ip = ip }],
    };

    private static async Task RunAsync(VifHarness h, Hypervisor.Domains.Hyperd.DomainRecord evil, Process peer, Task<string> stderr,
        IperfStream stream, int domB, int domC, ITestOutputHelper output)
    {
        var fe = VifHarness.FrontendPath(evil.Domid);
        long sent = 0;
        var sessions = 0;
        var intervalsAtStart = stream.Intervals.Count;
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

        // The stream between the two guests ran through all of that, every second moving data, and still does.
        var during = stream.Intervals.Count - intervalsAtStart;
        await stream.WaitForIntervalsAsync(stream.Intervals.Count + 2, VifHarness.Limit);
        Assert.True(during > 0, "iperf3 reported no interval during the hostile run");
        Assert.Null(stream.Failure);

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
        output.WriteLine($"{sent} hostile slots in {sessions} sessions; {during} s of iperf3 between the guests meanwhile; vif stats: "
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
