using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using XenIo.Integration.Tests.VSwitch;
using XenIo.Tests;
using Xunit;

namespace XenIo.Integration.Tests.SwitchManagement;

/// <summary>
/// The management path end to end, with real processes: `xenio xenstored` and `xenio netback` on a
/// temporary run directory, and the `xenio switch` / `xenio capture` verbs driving them, with two
/// namespaces on TAP ports of a bridge the verbs created.
/// </summary>
public sealed class SwitchVerbsTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "xenio-swm-" + Guid.NewGuid().ToString("N")[..10]);
    private readonly string _run;
    private readonly List<Process> _daemons = [];
    private readonly StringBuilder _netbackLog = new();

    public SwitchVerbsTests()
    {
        _run = Path.Combine(_root, "run");
        Directory.CreateDirectory(_run);
    }

    private static string Xenio => Path.Combine(AppContext.BaseDirectory, "xenio.dll");

    private Process StartDaemon(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Xenio);
        foreach (var a in args) psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, e) => { lock (_netbackLog) _netbackLog.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { lock (_netbackLog) _netbackLog.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        _daemons.Add(p);
        return p;
    }

    private static void WaitFor(Func<bool> condition, string what, Process? daemon = null)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!condition())
        {
            if (daemon is { HasExited: true }) throw new InvalidOperationException($"daemon exited ({daemon.ExitCode}) while waiting for {what}");
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"timed out waiting for {what}");
            Thread.Sleep(50);
        }
    }

    private Process StartNetback()
    {
        var socket = Path.Combine(_run, "netback.sock");
        if (File.Exists(socket)) File.Delete(socket);
        var p = StartDaemon("netback", "--run-dir", _run);
        WaitFor(() => File.Exists(socket), "netback.sock", p);
        return p;
    }

    private static async Task StopAsync(Process p)
    {
        using (var kill = Process.Start("kill", ["-TERM", p.Id.ToString()])) await kill.WaitForExitAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await p.WaitForExitAsync(cts.Token);
    }

    private (int Code, string Out, string Err) Verb(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Xenio);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["XENIO_RUN_DIR"] = _run;
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output, err.Result);
    }

    private string Ok(params string[] args)
    {
        var (code, output, err) = Verb(args);
        Assert.True(code == 0, $"xenio {string.Join(' ', args)} exited {code}: {err}");
        return output;
    }

    private JsonElement Json(params string[] args)
    {
        using var doc = JsonDocument.Parse(Ok(args));
        return doc.RootElement.Clone();
    }

    private static bool LinkExists(string ifname) => Netns.RunCode("ip", ["link", "show", ifname]).Item1 == 0;

    private static bool Ping(Netns from, string address, int count) =>
        from.TryExec("ping", "-c", count.ToString(), "-i", "0.2", "-W", "2", address).ExitCode == 0;

    private static JsonElement Port(JsonElement bridge, string name) =>
        bridge.GetProperty("ports").EnumerateArray().Single(p => p.GetProperty("name").GetString() == name);

    [SkippableFact]
    public async Task VerbsConfigureTheLiveSwitchAndNetbackRestoresIt()
    {
        Requires.Root();
        var tshark = Requires.Tool("tshark");
        Requires.Tool("ping");
        var tag = (Environment.ProcessId % 10000).ToString("D4");
        string br = $"swm{tag}", tapA = $"swa{tag}", tapB = $"swb{tag}";

        // Nothing running: the verbs say which socket and how to start the daemons.
        var down = Verb("switch", "show");
        Assert.Equal(1, down.Code);
        Assert.Contains(Path.Combine(_run, "netback.sock"), down.Err);
        Assert.Contains("xenio netback", down.Err);

        var xenstored = StartDaemon("xenstored", "--run-dir", _run, "--state-dir", Path.Combine(_root, "state"));
        WaitFor(() => File.Exists(Path.Combine(_run, "xenstored", "socket")), "xenstored socket", xenstored);
        var netback = StartNetback();

        // The embedded default, then our own bridge and two TAP ports.
        WaitFor(() => Verb("switch", "show", "--json").Out.Contains("xenbr0"), "default bridge xenbr0");
        Ok("switch", "add-br", br);
        var dup = Verb("switch", "add-br", br);
        Assert.Equal(1, dup.Code);
        Assert.Contains("exists already", dup.Err);
        var bad = Verb("switch", "add-port", br, tapA, "--kind", "tap", "--vlan-mode", "access", "--tag", "5000");
        Assert.Equal(1, bad.Code);
        Assert.Contains($"/xenio/switch/{br}/port/{tapA}/tag = '5000'", bad.Err);
        var noBridge = Verb("switch", "add-port", "nosuchbr", tapA, "--kind", "tap");
        Assert.Contains("no bridge nosuchbr", noBridge.Err);
        Ok("switch", "add-port", br, tapA, "--kind", "tap");
        Ok("switch", "add-port", br, tapB, "--kind", "tap");
        WaitFor(() => LinkExists(tapA) && LinkExists(tapB), "both TAP devices", netback);

        using var nsA = new Netns($"swmA{tag}");
        using var nsB = new Netns($"swmB{tag}");
        nsA.Adopt(tapA, "198.18.77.1/24");
        nsB.Adopt(tapB, "198.18.77.2/24");
        Assert.True(Ping(nsA, "198.18.77.2", 3), "ping through the bridge failed");

        // show --json lists the ports; stats rise with traffic; the FDB has both MACs.
        var shown = Json("switch", "show", "--json").GetProperty("bridges").EnumerateArray().Single(b => b.GetProperty("name").GetString() == br);
        Assert.Equal(["swa" + tag, "swb" + tag], shown.GetProperty("ports").EnumerateArray().Select(p => p.GetProperty("name").GetString()!).Order().ToArray());
        Assert.Equal("tap", Port(shown, tapA).GetProperty("kind").GetString());
        var before = Port(Json("switch", "stats", br, "--json"), tapA).GetProperty("rx_packets").GetInt64();
        Assert.True(before > 0);
        Assert.True(Ping(nsA, "198.18.77.2", 2));
        var after = Port(Json("switch", "stats", br, "--json"), tapA).GetProperty("rx_packets").GetInt64();
        Assert.True(after >= before + 2, $"rx_packets {before} -> {after}");
        Assert.Contains($"port {tapA}:", Ok("switch", "stats", br));

        string Mac(Netns ns, string ifname) => ns.Exec("cat", $"/sys/class/net/{ifname}/address").Trim();
        var macs = Json("switch", "fdb", br, "--json").GetProperty("entries").EnumerateArray()
            .ToDictionary(e => e.GetProperty("mac").GetString()!, e => e.GetProperty("port").GetString()!);
        Assert.Equal(tapA, macs[Mac(nsA, tapA)]);
        Assert.Equal(tapB, macs[Mac(nsB, tapB)]);
        Assert.Contains("flushed", Ok("switch", "fdb-flush", br));
        Assert.Contains("no bridge nosuchbr", Verb("switch", "fdb", "nosuchbr").Err);

        // A live capture piped into tshark, as a user would: `xenio capture br -f icmp -c 4 -w - | tshark -r -`.
        using (var pinger = nsA.Start("ping", "-c", "100", "-i", "0.1", "198.18.77.2"))
        {
            var psi = new ProcessStartInfo("sh") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            psi.ArgumentList.Add("-c");
            psi.ArgumentList.Add($"dotnet '{Xenio}' capture {br} -f icmp -c 4 -w - | '{tshark}' -r - -T fields -e icmp.type");
            psi.Environment["XENIO_RUN_DIR"] = _run;
            using var pipeline = Process.Start(psi)!;
            var err = pipeline.StandardError.ReadToEndAsync();
            var output = await pipeline.StandardOutput.ReadToEndAsync();
            using (var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60))) await pipeline.WaitForExitAsync(cts.Token);
            pinger.Kill();
            var types = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            Assert.True(types.Length == 4, $"tshark read {types.Length} packets: {output} / {err.Result}");
            Assert.All(types, t => Assert.True(t is "8" or "0", $"icmp.type {t}"));

            // One port, pcapng, to a file: exactly -c records, each on that port's interface block.
            var file = Path.Combine(_root, "one-port.pcapng");
            var (code, _, capErr) = Verb("capture", br, "-i", tapB, "--pcapng", "-c", "3", "-w", file);
            Assert.True(code == 0, capErr);
            var interfaces = TsharkFields(tshark, file, "frame.interface_name", "frame.p2p_dir");
            Assert.Equal(3, interfaces.Length);
            Assert.All(interfaces, l => Assert.StartsWith($"{br}/{tapB}", l));
        }

        // A persistent mirror: what it refuses, then echo requests leaving through tapB only, in pcapng.
        var mirrorFile = Path.Combine(_root, "icmp-out.pcapng");
        void Refused(string expected, params string[] args)
        {
            var (code, _, err) = Verb(["switch", "add-mirror", .. args]);
            Assert.True(code == 1 && err.Contains(expected, StringComparison.Ordinal), $"add-mirror {string.Join(' ', args)}: exit {code}, '{err}' lacks '{expected}'");
        }
        Refused("no bridge nosuchbr", "nosuchbr", "m1", "-w", mirrorFile);
        Refused("directions = 'sideways'", br, "m1", "-w", mirrorFile, "--direction", "sideways");
        Refused("not a valid capture filter", br, "m1", "-w", mirrorFile, "-f", "not a (filter");
        Refused($"has no port nosuch; its ports: {tapA}, {tapB}", br, "m1", "-w", mirrorFile, "--ports", "nosuch");
        Refused("snaplen = '0'", br, "m1", "-w", mirrorFile, "-s", "0");
        Refused("vlans = '5000'", br, "m1", "-w", mirrorFile, "--vlans", "5000");
        Refused("does not exist", br, "m1", "-w", Path.Combine(_root, "no", "such", "dir", "x.pcap"));
        Refused("mirror name 'a/b' is invalid", br, "a/b", "-w", mirrorFile);
        Ok("switch", "add-mirror", br, "icmpout", "-i", tapB, "--direction", "out", "-f", "icmp", "--pcapng", "-w", mirrorFile);
        Refused("has a mirror icmpout already", br, "icmpout", "-w", mirrorFile);
        Refused($"mirror {br}/icmpout writes that file already", br, "other", "-w", mirrorFile);
        Assert.True(Ping(nsA, "198.18.77.2", 5));
        var listed = Json("switch", "list-mirrors", br, "--json").GetProperty("mirrors").EnumerateArray().Single();
        Assert.Equal(("icmpout", mirrorFile, "out", "icmp", "pcapng", true), (listed.GetProperty("name").GetString(), listed.GetProperty("file").GetString(),
            listed.GetProperty("directions").GetString(), listed.GetProperty("filter").GetString(), listed.GetProperty("format").GetString(), listed.GetProperty("active").GetBoolean()));
        Assert.Equal(5, listed.GetProperty("captured").GetInt64());
        Assert.Contains($"{br,-15} icmpout", Ok("switch", "list-mirrors"));
        Ok("switch", "del-mirror", br, "icmpout");
        Assert.Contains("has no mirror icmpout", Verb("switch", "del-mirror", br, "icmpout").Err);
        Assert.Empty(Json("switch", "list-mirrors", br, "--json").GetProperty("mirrors").EnumerateArray());
        // Closed by del-mirror, so tshark reads it whole: the five requests, leaving through tapB.
        var mirrored = TsharkFields(tshark, mirrorFile, "icmp.type", "frame.interface_name", "frame.packet_flags_direction");
        Assert.Equal(5, mirrored.Length);
        Assert.All(mirrored, l => Assert.Matches($"^8\t{br}/{tapB}\t(0x0*2|2|Outbound)", l));

        // One more, left in place: netback's restart below must bring it back and continue its file.
        var everything = Path.Combine(_root, "everything.pcap");
        File.WriteAllText(everything, "an old file add-mirror replaces\n");
        Ok("switch", "add-mirror", br, "everything", "-w", everything);
        Assert.True(Ping(nsA, "198.18.77.2", 2));

        // set-port in place, then del-port removes it live.
        Ok("switch", "set-port", br, tapA, "--vlan-mode", "access", "--tag", "9");
        WaitFor(() => Port(Json("switch", "show", "--json").GetProperty("bridges").EnumerateArray().Single(b => b.GetProperty("name").GetString() == br), tapA)
            .GetProperty("vlan_mode").GetString() == "access", "vlan mode change");
        Ok("switch", "set-port", br, tapA, "--vlan-mode", "trunk");
        Ok("switch", "del-port", br, tapB);
        WaitFor(() => !Verb("switch", "show", "--json").Out.Contains(tapB), "port removal");
        Assert.False(Ping(nsA, "198.18.77.2", 1));
        Assert.Contains($"has no port {tapB}", Verb("switch", "del-port", br, tapB).Err);

        // Restart netback: the configuration comes back from xenstore.
        await StopAsync(netback);
        Assert.Equal(0, netback.ExitCode);
        var capturedBeforeRestart = Records(tshark, everything);
        Assert.True(capturedBeforeRestart >= 4, $"{capturedBeforeRestart} records in {everything}");
        netback = StartNetback();
        WaitFor(() => Verb("switch", "show", "--json").Out.Contains(tapA), "restored port");
        var restored = Json("switch", "show", "--json").GetProperty("bridges").EnumerateArray().Select(b => b.GetProperty("name").GetString()).ToArray();
        Assert.Contains(br, restored);
        Assert.Contains("xenbr0", restored);
        Assert.True(LinkExists(tapA), "the restored TAP port was not re-created");
        WaitFor(() => Json("switch", "list-mirrors", br, "--json").GetProperty("mirrors").EnumerateArray()
            .Any(m => m.GetProperty("name").GetString() == "everything" && m.GetProperty("active").GetBoolean()), "the mirror restored with the bridge");
        Assert.Equal(capturedBeforeRestart, Records(tshark, everything)); // continued, not started afresh

        Ok("switch", "del-br", br);
        WaitFor(() => !LinkExists(tapA), "bridge removal takes its TAP");
        await StopAsync(netback);
        await StopAsync(xenstored);
    }

    /// <summary>A bridge's FDB as <c>xenio switch fdb BR --json</c> lists it.</summary>
    private List<(string Mac, int Vlan, string Port, bool Static)> FdbEntries(string bridge) =>
        Json("switch", "fdb", bridge, "--json").GetProperty("entries").EnumerateArray()
            .Select(e => (e.GetProperty("mac").GetString()!, e.GetProperty("vlan").GetInt32(), e.GetProperty("port").GetString()!, e.GetProperty("static").GetBoolean()))
            .ToList();

    private static Socket ConnectUnix(string path)
    {
        WaitFor(() => File.Exists(path), path);
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = 10_000 };
        s.Connect(new UnixDomainSocketEndPoint(path));
        return s;
    }

    /// <summary>One frame as QEMU's <c>-netdev stream</c> carries it: a big-endian u32 length, then the frame.</summary>
    private static void SendFrame(Socket socket, byte[] frame)
    {
        var prefix = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(prefix, (uint)frame.Length);
        socket.Send([.. prefix, .. frame]);
    }

    private static byte[] ReadFrame(Socket socket)
    {
        byte[] Exactly(int n)
        {
            var buffer = new byte[n];
            for (var got = 0; got < n;)
            {
                var r = socket.Receive(buffer, got, n - got, SocketFlags.None);
                if (r == 0) throw new EndOfStreamException();
                got += r;
            }
            return buffer;
        }
        return Exactly((int)BinaryPrimitives.ReadUInt32BigEndian(Exactly(4)));
    }

    private static byte[] EthernetFrame(string destination, string source)
    {
        var frame = new byte[60];
        Convert.FromHexString(destination.Replace(":", "", StringComparison.Ordinal)).CopyTo(frame, 0);
        Convert.FromHexString(source.Replace(":", "", StringComparison.Ordinal)).CopyTo(frame, 6);
        frame[12] = 0x88; // a local experimental EtherType (0x88B5): the switch forwards it as any other
        frame[13] = 0xB5;
        return frame;
    }

    [Fact]
    public async Task StaticFdbEntriesAreConfiguredByTheVerbsRestoredAtStartAndKeptByLearningFlushAndPortRecreation()
    {
        const string br = "fdbbr", station = "02:00:00:00:00:77", other = "02:00:00:00:00:78";
        string sock1 = Path.Combine(_root, "s1.sock"), sock2 = Path.Combine(_root, "s2.sock");
        var xenstored = StartDaemon("xenstored", "--run-dir", _run, "--state-dir", Path.Combine(_root, "state"));
        WaitFor(() => File.Exists(Path.Combine(_run, "xenstored", "socket")), "xenstored socket", xenstored);
        Ok("switch", "add-br", br);
        Ok("switch", "add-port", br, "s1", "--kind", "stream", "-o", $"listen=unix:{sock1}");
        Ok("switch", "add-port", br, "s2", "--kind", "stream", "-o", $"listen=unix:{sock2}");

        // Without netback the entry is configured; netback applies it when it starts.
        var (code, _, err) = Verb("switch", "fdb-add", br, station, "s1");
        Assert.True(code == 0, err);
        Assert.Contains("the entry applies when it starts", err);
        var netback = StartNetback();
        WaitFor(() => Verb("switch", "fdb", br, "--json").Out.Contains(station), "the static entry restored at start", netback);
        Assert.Contains((station, 0, "s1", true), FdbEntries(br));

        // With netback up, fdb-add returns once the entry is in the table: the next listing shows it static on its port.
        Ok("switch", "fdb-add", br, other, "s2", "--vlan", "0");
        Assert.Contains((other, 0, "s2", true), FdbEntries(br));
        Assert.Contains(Ok("switch", "fdb", br).Split('\n'), line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries) is ["s2", "0", var mac, "static"] && mac == other);
        Assert.Contains("bridge fdbbr has no port vif9.0; its ports: s1, s2", Verb("switch", "fdb-add", br, station, "vif9.0").Err);

        // Frames to the station go to s1; frames from its address arriving on s2 do not move it.
        using (var behind1 = ConnectUnix(sock1))
        using (var behind2 = ConnectUnix(sock2))
        {
            // Both connections are up once a broadcast from behind s1 comes out behind s2.
            var hello = EthernetFrame("ff:ff:ff:ff:ff:ff", "02:00:00:00:00:01");
            WaitFor(() =>
            {
                SendFrame(behind1, hello);
                return behind2.Poll(200_000, SelectMode.SelectRead);
            }, "both stream ports connected", netback);
            var spoofed = EthernetFrame("ff:ff:ff:ff:ff:ff", station);
            SendFrame(behind2, spoofed);
            Assert.Equal(spoofed, ReadFrame(behind1));
            var toStation = EthernetFrame(station, "02:00:00:00:00:02");
            SendFrame(behind2, toStation);
            Assert.Equal(toStation, ReadFrame(behind1));
        }
        var entries = FdbEntries(br);
        Assert.Contains((station, 0, "s1", true), entries);
        Assert.Contains(("02:00:00:00:00:02", 0, "s2", false), entries);

        // fdb-flush forgets what was learned, not the static entries.
        Assert.Contains("flushed", Ok("switch", "fdb-flush", br));
        Assert.Equal([(station, 0, "s1", true), (other, 0, "s2", true)], FdbEntries(br).Order());

        // s1 re-created (new options): its removal flushed its entries, and netback puts the static one back.
        var sock1b = Path.Combine(_root, "s1b.sock");
        Ok("switch", "set-port", br, "s1", "-o", $"listen=unix:{sock1b}");
        WaitFor(() => File.Exists(sock1b) && FdbEntries(br).Contains((station, 0, "s1", true)), "the entry back on the re-created port", netback);

        Ok("switch", "fdb-del", br, other);
        WaitFor(() => !FdbEntries(br).Any(e => e.Mac == other), "the deleted entry leaving the table", netback);
        Assert.Contains("has no static entry for 02:00:00:00:00:78", Verb("switch", "fdb-del", br, other).Err);
        await StopAsync(netback);
        await StopAsync(xenstored);
    }

    /// <summary>tshark's lines for a capture file, one per record with the given fields tab-separated (its "Running as" notice dropped).</summary>
    private static string[] TsharkFields(string tshark, string file, params string[] fields) =>
        Netns.Run(tshark, ["-r", file, "-T", "fields", .. fields.SelectMany(f => new[] { "-e", f })])
            .Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Where(l => !l.StartsWith("Running as", StringComparison.Ordinal)).ToArray();

    /// <summary>How many records tshark reads from a capture file.</summary>
    private static int Records(string tshark, string file) => TsharkFields(tshark, file, "frame.number").Length;

    public void Dispose()
    {
        foreach (var p in _daemons)
        {
            try
            {
                if (!p.HasExited) p.Kill(entireProcessTree: true);
                p.WaitForExit(10_000);
            }
            catch (InvalidOperationException) { }
            p.Dispose();
        }
        try { Directory.Delete(_root, true); } catch (IOException) { }
    }
}
