using System.Net;
using System.Net.Sockets;
using System.Text;
using XenIo.Consoled.Access;
using XenIo.Hypervisor.Abi;
using Xunit;

namespace XenIo.Consoled.Tests;

public sealed class MultiplexerTests
{
    private const string Attached = "read-write; ^Ec? for help]";

    [Fact]
    public async Task Guest_output_reaches_a_viewer_and_typed_input_reaches_the_ring()
    {
        await using var h = new Harness();
        var (guest, reg) = h.AddGuest("web");
        await using var viewer = await RawClient.ConnectAsync(reg.Ports.RawPort!.Value);
        await viewer.WaitForAsync(Attached);
        await guest.PrintAsync("login: ");
        await viewer.WaitForAsync("login: ");
        await viewer.SendAsync("root\r");
        Assert.Contains("root\r", await guest.ExpectInputAsync("root\r"));
    }

    [Fact]
    public async Task Output_while_nobody_watched_is_replayed_and_logged()
    {
        await using var h = new Harness();
        var (guest, reg) = h.AddGuest("quiet");
        await guest.PrintAsync("early boot message\r\n");
        var log = Path.Combine(h.LogDirectory, "guest-quiet.log");
        for (int i = 0; i < 200 && (!File.Exists(log) || !File.ReadAllText(log).Contains("early boot")); i++) await Task.Delay(20);
        Assert.Contains("early boot message", File.ReadAllText(log));
        await using var viewer = await RawClient.ConnectAsync(reg.Ports.RawPort!.Value);
        await viewer.WaitForAsync("early boot message");
    }

    [Fact]
    public async Task Two_viewers_see_the_same_output_and_the_spectator_cannot_type_until_it_forces()
    {
        await using var h = new Harness();
        var (guest, reg) = h.AddGuest("shared");
        await using var first = await RawClient.ConnectAsync(reg.Ports.RawPort!.Value);
        await first.WaitForAsync(Attached);
        await using var second = await RawClient.ConnectAsync(reg.Ports.RawPort!.Value);
        await second.WaitForAsync("read-only");
        await guest.PrintAsync("both of you\r\n");
        await first.WaitForAsync("both of you");
        await second.WaitForAsync("both of you");

        await second.SendAsync("spectator-typing\r");
        await first.SendAsync("writer-typing\r");
        var input = await guest.ExpectInputAsync("writer-typing\r");
        Assert.DoesNotContain("spectator", input);

        await second.SendAsync("\u0005cf");
        await second.WaitForAsync("read-write (forced)");
        await first.WaitForAsync("forced attach; you are read-only");
        await first.SendAsync("old-writer\r");
        await second.SendAsync("new-writer\r");
        input = await guest.ExpectInputAsync("new-writer\r");
        Assert.DoesNotContain("old-writer", input);
    }

    [Fact]
    public async Task Every_byte_reaches_a_raw_viewer_intact()
    {
        await using var h = new Harness();
        var (guest, reg) = h.AddGuest("bytes");
        await using var viewer = await RawClient.ConnectAsync(reg.Ports.RawPort!.Value);
        await viewer.WaitForAsync(Attached);
        int start = viewer.Received.Length;
        var all = Enumerable.Range(0, 256).Select(i => (byte)i).ToArray();
        await guest.WriteAsync(all);
        await guest.PrintAsync("END");
        await viewer.WaitForAsync("END");
        Assert.Equal(all, viewer.Received[start..(start + 256)]);
    }

    [Fact]
    public async Task A_telnet_viewer_is_negotiated_with_and_gets_iac_doubled()
    {
        await using var h = new Harness();
        var (guest, reg) = h.AddGuest("tn");
        await using var viewer = await RawClient.ConnectAsync(reg.Ports.TelnetPort);
        await viewer.WaitForAsync(Attached);
        Assert.Equal(new byte[] { 255, 251, 1, 255, 251, 3, 255, 253, 3, 255, 251, 0, 255, 253, 0, 255, 253, 31 }, viewer.Received[..18]);
        await viewer.SendAsync([255, 253, 0, 255, 251, 0]); // DO BINARY, WILL BINARY
        await guest.WriteAsync(new byte[] { (byte)'<', 255, (byte)'>' });
        await viewer.WaitForAsync("<\u00ff\u00ff>");
    }

    [Fact]
    public async Task Without_a_token_a_viewer_is_refused_and_with_it_admitted()
    {
        await using var h = new Harness(o => o.AlwaysRequireTokens = true);
        var (guest, reg) = h.AddGuest("locked");
        await guest.PrintAsync("secret shell\r\n");
        await using (var intruder = await RawClient.ConnectAsync(reg.Ports.RawPort!.Value))
        {
            await intruder.WaitForAsync("token for console locked: ");
            await intruder.SendAsync("token 00000000000000000000000000000000\n");
            await intruder.WaitForAsync("access denied");
            await intruder.WaitClosedAsync();
            Assert.DoesNotContain("secret", intruder.Text);
        }
        await using var admin = await RawClient.ConnectAsync(reg.Ports.RawPort!.Value);
        await admin.WaitForAsync("token for console locked: ");
        await admin.SendAsync($"token {reg.Token}\r\nls\r");
        await admin.WaitForAsync("secret shell");
        // The line feed after the token line is not passed on to the guest.
        Assert.Equal("ls\r", await guest.ExpectInputAsync("ls\r"));
    }

    [Fact]
    public async Task A_silent_client_is_dropped_after_the_auth_timeout()
    {
        await using var h = new Harness(o =>
        {
            o.AlwaysRequireTokens = true;
            o.Multiplexer.AuthTimeout = TimeSpan.FromMilliseconds(300);
        });
        var (_, reg) = h.AddGuest("slow");
        await using var viewer = await RawClient.ConnectAsync(reg.Ports.RawPort!.Value);
        await viewer.WaitForAsync("no token given in time");
        await viewer.WaitClosedAsync();
    }

    [Fact]
    public async Task A_stalled_viewer_neither_blocks_the_guest_nor_another_viewer()
    {
        await using var h = new Harness(o => o.Multiplexer.ViewerQueueBytes = 64 * 1024);
        var (guest, reg) = h.AddGuest("flood");
        await using var stalled = await RawClient.ConnectAsync(reg.Ports.RawPort!.Value, read: false, receiveBuffer: 4096);
        for (int i = 0; i < 1000 && reg.Hub.ViewerCount == 0; i++) await Task.Delay(10);
        await using var reader = await RawClient.ConnectAsync(reg.Ports.RawPort!.Value);
        await reader.WaitForAsync("read-only");
        var line = Encoding.ASCII.GetBytes(new string('x', 1023) + "\n");
        for (int i = 0; i < 4096; i++) await guest.WriteAsync(line); // 4 MiB
        // On a loaded machine the reader may fall behind too and have whole chunks dropped (with a
        // marker), so the end marker is repeated until one arrives.
        int markers = 0;
        var deadline = DateTime.UtcNow.AddSeconds(60);
        do
        {
            await guest.PrintAsync("DONE\r\n");
            markers++;
            await Task.Delay(200);
        }
        while (!reader.Text.Contains("DONE", StringComparison.Ordinal) && DateTime.UtcNow < deadline);
        Assert.Contains("DONE", reader.Text, StringComparison.Ordinal);
        var hub = reg.Hub;
        // Everything left the ring; what the log could not keep up with was discarded in the middle.
        Assert.Equal(4 * 1024 * 1024 + 6L * markers, hub.BytesFromGuest + hub.DiscardedBytes);
        // The reader lost nothing silently: what it got plus what its markers report is all that was
        // published (once the last marker written has been delivered or reported dropped).
        long accounted = 0;
        for (int i = 0; i < 100; i++)
        {
            var text = reader.Text;
            long reported = 0;
            foreach (System.Text.RegularExpressions.Match m in System.Text.RegularExpressions.Regex.Matches(text, @"\r\n\[xenio: (\d+) bytes dropped\]\r\n"))
                reported += long.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            accounted = System.Text.RegularExpressions.Regex.Replace(text, @"\r\n\[xenio: [^\]]*\]\r\n", "").Length + reported;
            if (accounted == hub.BytesFromGuest) break;
            await Task.Delay(100);
        }
        Assert.Equal(hub.BytesFromGuest, accounted);
    }

    [Fact]
    public async Task A_broken_ring_is_disconnected_and_other_consoles_keep_working()
    {
        await using var h = new Harness();
        var (bad, badReg) = h.AddGuest("bad");
        var (good, goodReg) = h.AddGuest("good");
        await using var badViewer = await RawClient.ConnectAsync(badReg.Ports.RawPort!.Value);
        await badViewer.WaitForAsync(Attached);
        unsafe
        {
            var intf = (XenconsInterface*)bad.Page;
            intf->OutProd = intf->OutCons + 5000;
        }
        bad.Kick();
        await badViewer.WaitForAsync("console ring of bad is broken; disconnected");
        await using var goodViewer = await RawClient.ConnectAsync(goodReg.Ports.RawPort!.Value);
        await good.PrintAsync("still fine");
        await goodViewer.WaitForAsync("still fine");
    }

    [Fact]
    public async Task Break_then_a_key_is_a_sysrq_request()
    {
        var keys = new List<char>();
        await using var h = new Harness();
        var (guest, reg) = h.AddGuest("rq", s => s.SysrqRequested = k => { lock (keys) keys.Add(k); });
        await using var raw = await RawClient.ConnectAsync(reg.Ports.RawPort!.Value);
        await raw.WaitForAsync(Attached);
        await raw.SendAsync("\u0005cbh");
        await raw.WaitForAsync("next key is a SysRq key");
        for (int i = 0; i < 200 && keys.Count == 0; i++) await Task.Delay(10);
        await raw.SendAsync("\u0005c.");
        await raw.WaitClosedAsync();

        await using var tn = await RawClient.ConnectAsync(reg.Ports.TelnetPort);
        await tn.WaitForAsync(Attached);
        await tn.SendAsync([255, 243, (byte)'s', (byte)'x']);
        Assert.Contains("x", await guest.ExpectInputAsync("x"));
        lock (keys) Assert.Equal(['h', 's'], keys);
    }

    [Fact]
    public async Task The_directory_lists_consoles_and_ports()
    {
        await using var h = new Harness();
        var (_, a) = h.AddGuest("alpha");
        var (_, b) = h.AddGuest("beta");
        await using var dir = await RawClient.ConnectAsync(h.Service.Multiplexer.DirectoryPort);
        await dir.WaitClosedAsync();
        Assert.Equal($"alpha telnet {a.Ports.TelnetPort} raw {a.Ports.RawPort}\r\nbeta telnet {b.Ports.TelnetPort} raw {b.Ports.RawPort}\r\n", dir.Text);
    }

    [Fact]
    public async Task Unregistering_disconnects_viewers_and_is_idempotent()
    {
        await using var h = new Harness();
        var (_, reg) = h.AddGuest("gone");
        await using var viewer = await RawClient.ConnectAsync(reg.Ports.TelnetPort);
        await viewer.WaitForAsync(Attached);
        await h.Service.UnregisterAsync("gone");
        await h.Service.UnregisterAsync("gone");
        await viewer.WaitClosedAsync();
        Assert.Null(h.Service.Multiplexer.Find("gone"));
        await Assert.ThrowsAnyAsync<SocketException>(async () => await RawClient.ConnectAsync(reg.Ports.TelnetPort));
    }

    [Fact]
    public async Task Ports_come_from_the_base_and_are_reported()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        int busy = ((IPEndPoint)probe.LocalEndpoint).Port;
        ConsolePortsHolder published = new();
        await using var h = new Harness(o => { o.Multiplexer.PortBase = busy; o.RawPorts = false; o.Multiplexer.DirectoryPort = -1; });
        var (_, reg) = h.AddGuest("based", s => s.PortsPublished = p => published.Ports = p);
        Assert.True(reg.Ports.TelnetPort > busy && reg.Ports.TelnetPort < busy + 1000);
        Assert.Null(reg.Ports.RawPort);
        Assert.Equal(reg.Ports, published.Ports);
    }

    private sealed class ConsolePortsHolder
    {
        public Viewers.ConsolePorts? Ports { get; set; }
    }

    [Fact]
    public async Task Connect_disconnect_cycles_leave_the_daemon_serving_with_bounded_memory()
    {
        await using var h = new Harness(o => o.Multiplexer.AuthTimeout = TimeSpan.FromSeconds(2));
        var (guest, reg) = h.AddGuest("churn");
        var random = new Random(99);
        GC.Collect();
        long before = GC.GetTotalMemory(forceFullCollection: true);
        for (int i = 0; i < 1000; i++)
        {
            int port = random.Next(2) == 0 ? reg.Ports.TelnetPort : reg.Ports.RawPort!.Value;
            using var client = new TcpClient();
            await client.ConnectAsync(IPAddress.Loopback, port);
            var stream = client.GetStream();
            switch (i % 4)
            {
                case 0:
                    break; // connect and go
                case 1:
                    var junk = new byte[random.Next(1, 512)];
                    random.NextBytes(junk);
                    await stream.WriteAsync(junk);
                    break;
                case 2:
                    await stream.WriteAsync(new byte[] { 255, 250, 31 }); // half a sub-negotiation
                    break;
                case 3:
                    client.Client.LingerState = new LingerOption(true, 0); // RST
                    break;
            }
            if (i % 50 == 0) await guest.PrintAsync($"tick {i}\r\n");
        }
        for (int i = 0; i < 500 && h.Service.Multiplexer.ConnectionCount > 0; i++) await Task.Delay(20);
        Assert.Equal(0, h.Service.Multiplexer.ConnectionCount);
        Assert.Equal(0, reg.Hub.ViewerCount);
        GC.Collect();
        long after = GC.GetTotalMemory(forceFullCollection: true);
        Assert.True(after - before < 32 * 1024 * 1024, $"managed heap grew by {(after - before) / 1024} KiB");

        await using var viewer = await RawClient.ConnectAsync(reg.Ports.RawPort!.Value);
        await guest.PrintAsync("alive");
        await viewer.WaitForAsync("alive");
    }

    [Fact]
    public async Task An_external_serial_socket_is_a_console_and_is_reconnected()
    {
        using var qemu = new TcpListener(IPAddress.Loopback, 0);
        qemu.Start();
        await using var h = new Harness();
        var reg = h.Service.RegisterExternal(new ConsoleSpec("vm"), qemu.LocalEndpoint);
        await using var viewer = await RawClient.ConnectAsync(reg.Ports.RawPort!.Value);
        await viewer.WaitForAsync(Attached);

        using (var serial = await qemu.AcceptTcpClientAsync())
        {
            await serial.GetStream().WriteAsync("SeaBIOS (version x)\r\n"u8.ToArray());
            await viewer.WaitForAsync("SeaBIOS");
            await viewer.SendAsync("typed\r");
            var buffer = new byte[64];
            int n = await serial.GetStream().ReadAsync(buffer).AsTask().WaitAsync(TimeSpan.FromSeconds(20));
            Assert.Equal("typed\r", Encoding.ASCII.GetString(buffer, 0, n));
        }
        await viewer.WaitForAsync("closed the console; reconnecting");
        using (var again = await qemu.AcceptTcpClientAsync().WaitAsync(TimeSpan.FromSeconds(20)))
        {
            await again.GetStream().WriteAsync("second boot"u8.ToArray());
            await viewer.WaitForAsync("second boot");
        }
    }

    [Fact]
    public void Tokens_are_random_per_console_and_kept_in_a_private_file()
    {
        var dir = Directory.CreateTempSubdirectory("xenio-tokens").FullName;
        try
        {
            var path = Path.Combine(dir, "console-tokens");
            var tokens = new ConsoleTokens(path);
            var a = tokens.GetOrCreate("a");
            var b = tokens.GetOrCreate("b");
            Assert.NotEqual(a, b);
            Assert.Matches("^[0-9a-f]{32}$", a);
            if (!OperatingSystem.IsWindows()) Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
            var reloaded = new ConsoleTokens(path);
            Assert.Equal(a, reloaded.GetOrCreate("a"));
            Assert.True(reloaded.Verify("a", Encoding.ASCII.GetBytes(a.ToUpperInvariant())));
            Assert.False(reloaded.Verify("a", Encoding.ASCII.GetBytes(b)));
            Assert.False(reloaded.Verify("a", "short"u8));
            Assert.False(reloaded.Verify("nope", Encoding.ASCII.GetBytes(a)));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Theory]
    [InlineData("   1: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 123 1 0000000000000000 20 4 30 10 -1",
        "127.0.0.1:54321", "127.0.0.1:8080", 1000u)]
    [InlineData("   0: 00000000000000000000000001000000:C350 00000000000000000000000001000000:0016 01 00000000:00000000 00:00000000 00000000     0        0 77 1",
        "[::1]:50000", "[::1]:22", 0u)]
    [InlineData("   2: 0000000000000000FFFF00000100007F:0050 0000000000000000FFFF00000100007F:0051 01 0:0 00:0 0  65534 0 1",
        "127.0.0.1:80", "127.0.0.1:81", 65534u)]
    public void Proc_net_tcp_rows_are_parsed(string row, string local, string remote, uint uid)
    {
        Assert.True(TcpSocketOwner.TryParseRow(row, out var l, out var r, out var u));
        Assert.Equal(IPEndPoint.Parse(local), l);
        Assert.Equal(IPEndPoint.Parse(remote), r);
        Assert.Equal(uid, u);
        Assert.False(TcpSocketOwner.TryParseRow("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode", out _, out _, out _));
    }

    [Fact]
    public async Task The_owner_of_a_live_loopback_connection_is_found()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndpoint).Port);
        using var server = await listener.AcceptSocketAsync();
        var uid = TcpSocketOwner.Find((IPEndPoint)server.RemoteEndPoint!, (IPEndPoint)server.LocalEndPoint!);
        Assert.Equal(XenIo.Consoled.Interop.Libc.GetEuid(), uid);
        Assert.True(new AdministratorCheck().IsAdministrator(0));
        Assert.False(new AdministratorCheck(null).IsAdministrator(65534));
        Assert.False(new AdministratorCheck("no-such-group-xenio").IsAdministrator(65534));
    }

    [Fact]
    public async Task A_flooding_guest_is_throttled_and_nothing_is_lost()
    {
        await using var h = new Harness(o => o.RateLimit = new Rings.RateLimit(4096, 0, TimeSpan.FromMilliseconds(20)));
        var (guest, reg) = h.AddGuest("noisy");
        await using var viewer = await RawClient.ConnectAsync(reg.Ports.RawPort!.Value);
        await viewer.WaitForAsync(Attached);
        var payload = Encoding.ASCII.GetBytes(new string('n', 40 * 1024) + "END");
        await guest.WriteAsync(payload);
        await viewer.WaitForAsync("END");
        Assert.True(((Rings.RingConsoleSource)reg.Hub.Source).Throttles > 0);
        Assert.Equal(payload.Length, reg.Hub.BytesFromGuest);
    }

    [Theory]
    [InlineData("127.0.0.1", false, false)]
    [InlineData("::1", false, false)]
    [InlineData("0.0.0.0", false, true)]
    [InlineData("198.18.0.1", false, true)]
    [InlineData("127.0.0.1", true, true)]
    public void Tokens_are_required_beyond_loopback(string address, bool always, bool required)
    {
        var options = new ConsoledOptions { AlwaysRequireTokens = always };
        options.Multiplexer.ListenAddress = IPAddress.Parse(address);
        Assert.Equal(required, options.RequireTokens);
    }

    [Fact]
    public async Task Connections_beyond_the_limit_are_refused_even_before_they_authenticate()
    {
        await using var h = new Harness(o =>
        {
            o.AlwaysRequireTokens = true;
            o.Multiplexer.MaxViewersPerConsole = 3;
        });
        var (_, reg) = h.AddGuest("busy");
        var pending = new List<RawClient>();
        for (int i = 0; i < 3; i++)
        {
            var c = await RawClient.ConnectAsync(reg.Ports.RawPort!.Value);
            await c.WaitForAsync("token for console busy");
            pending.Add(c);
        }
        await using (var refused = await RawClient.ConnectAsync(reg.Ports.RawPort!.Value))
        {
            await refused.WaitForAsync("too many viewers");
            await refused.WaitClosedAsync();
        }
        foreach (var c in pending) await c.DisposeAsync();
        for (int i = 0; i < 500 && h.Service.Multiplexer.ConnectionCount > 0; i++) await Task.Delay(10);
        await using var later = await RawClient.ConnectAsync(reg.Ports.RawPort!.Value);
        await later.WaitForAsync("token for console busy");
    }
}
