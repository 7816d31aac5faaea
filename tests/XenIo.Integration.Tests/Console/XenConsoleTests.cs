using System.Globalization;
using System.Text;
using XenIo.Tests;
using Xunit;

namespace XenIo.Integration.Tests.Consoles;

/// <summary>
/// Acceptance of consoled on real domains: hyperd, xenstored and consoled as processes, guest agents
/// whose init is /bin/sh on the PV console ring, and the clients users have (telnet under tmux,
/// socat, <c>xenio console</c>).
/// </summary>
public sealed class XenConsoleTests(XenConsoleFixture fx, Xunit.Abstractions.ITestOutputHelper output) : IClassFixture<XenConsoleFixture>
{
    private async Task StartAsync(params string[] tools)
    {
        Requires.Root("hyperd starts guests in namespaces of their own");
        foreach (var t in tools) Requires.Tool(t);
        Skip.If(RepoBuild.GuestAgent() is null, RepoBuild.NoGuestAgent);
        await fx.StartAsync();
    }

    private static string Port(int port) => port.ToString(CultureInfo.InvariantCulture);

    /// <summary>Types a line into a telnet session and waits until its output shows.</summary>
    private static async Task RunAsync(Tmux tmux, string session, string command, string expect)
    {
        tmux.Type(session, command);
        tmux.SendKeys(session, "Enter");
        await tmux.WaitForAsync(session, expect);
    }

    [SkippableFact]
    public async Task Telnet_reaches_a_guest_shell_two_viewers_share_it_the_spectator_cannot_type_and_force_attach_works()
    {
        await StartAsync("telnet", "tmux", "xenstore-read");
        var name = fx.CreateDomain("tel");
        try
        {
            var (domid, telnet, _) = await fx.PortsAsync(name);
            // Where `xenio list` and the guest look for it (published once consoled serves the console).
            Assert.Equal(Port(telnet), await fx.XenstoreReadWhenAsync($"/local/domain/{domid}/console/telnet-port", Port(telnet)));
            if (Requires.Which("xenstore-ls") is not null)
            {
                // dom0's node, readable by the guest: permissions (n0,r<domid>).
                var perms = fx.XenstoreTool("xenstore-ls", "-p", $"/local/domain/{domid}/console") ?? "";
                Assert.Contains($"(n0,r{domid})", perms.Split('\n').Single(l => l.TrimStart().StartsWith("telnet-port", StringComparison.Ordinal)));
            }
            using var tmux = new Tmux();
            tmux.Start("a", $"telnet 127.0.0.1 {telnet}");
            await tmux.WaitForAsync("a", "read-write");
            // $((6*7)) proves the shell ran it: the echo of the command line has no 42 in it.
            await RunAsync(tmux, "a", "echo hello-$((6*7)) from $(hostname)", $"hello-42 from {name}");

            tmux.Start("b", $"telnet 127.0.0.1 {telnet}");
            await tmux.WaitForAsync("b", "read-only");
            await tmux.WaitForAsync("b", "hello-42"); // scrollback replayed on attach
            tmux.Type("b", "echo spectator-$((1+1))");
            tmux.SendKeys("b", "Enter");
            await RunAsync(tmux, "a", "echo writer-$((2+3))", "writer-5");
            await tmux.WaitForAsync("b", "writer-5"); // both viewers see the same output
            Assert.DoesNotContain("spectator-2", tmux.Capture("a"));
            Assert.DoesNotContain("spectator-2", tmux.Capture("b"));

            tmux.SendKeys("b", "C-e", "c", "f");
            await tmux.WaitForAsync("b", "read-write (forced)");
            await tmux.WaitForAsync("a", "you are read-only");
            tmux.Type("a", "echo old-writer-$((3+4))");
            tmux.SendKeys("a", "Enter");
            await RunAsync(tmux, "b", "echo new-writer-$((4+4))", "new-writer-8");
            await tmux.WaitForAsync("a", "new-writer-8");
            Assert.DoesNotContain("old-writer-7", tmux.Capture("b"));
        }
        finally
        {
            fx.Destroy(name);
        }
    }

    private static byte[] Framed => [(byte)'<', (byte)'<', .. Enumerable.Range(0, 256).Select(i => (byte)i), (byte)'>', (byte)'>'];

    private static int IndexOf(byte[] haystack, byte[] needle)
    {
        for (int i = 0; i + needle.Length <= haystack.Length; i++)
            if (haystack.AsSpan(i, needle.Length).SequenceEqual(needle)) return i;
        return -1;
    }

    /// <summary>A file of &lt;&lt; 0x00..0xFF &gt;&gt; the guest can read (the host's file system, outside /tmp which the guest does not see).</summary>
    private static string BytesFile()
    {
        var dir = Path.Combine("/var/tmp", $"xenio-console-test-{Environment.ProcessId}");
        Directory.CreateDirectory(dir);
        var path = Path.Combine(dir, "bytes");
        File.WriteAllBytes(path, Framed);
        return path;
    }

    [SkippableFact]
    public async Task Bytes_0_to_255_from_the_guest_reach_socat_and_a_binary_telnet_intact()
    {
        await StartAsync("telnet", "socat");
        var name = fx.CreateDomain("bin");
        var file = BytesFile();
        try
        {
            var (_, telnet, raw) = await fx.PortsAsync(name);
            await using var socat = Tools.Start("socat", "-", $"TCP:127.0.0.1:{raw}");
            await socat.WaitForAsync("read-write");
            // -8: 8-bit data path; -E: no escape character.
            await using var binary = Tools.Start("telnet", "-8", "-E", "127.0.0.1", Port(telnet));
            await binary.WaitForAsync("read-only");
            await Task.Delay(300); // the BINARY negotiation settles before the payload
            // Raw mode on the guest's tty so its line discipline passes every byte (no \n → \r\n).
            await socat.SendAsync($"stty raw -echo; cat {file}; stty sane; echo; echo done-$((5*5))\n");
            await socat.WaitForAsync("done-25");
            await binary.WaitForAsync("done-25");
            foreach (var output in new[] { socat.Output, binary.Output })
            {
                int at = IndexOf(output, "<<\0\x01\x02"u8.ToArray());
                Assert.True(at >= 0, Encoding.Latin1.GetString(output));
                Assert.Equal(Framed, output[at..(at + Framed.Length)]);
            }
        }
        finally
        {
            fx.Destroy(name);
            Directory.Delete(Path.GetDirectoryName(file)!, recursive: true);
        }
    }

    [SkippableFact]
    public async Task A_local_user_without_the_token_is_refused_and_the_token_from_xenio_console_lets_them_in()
    {
        await StartAsync("socat", "setpriv");
        var name = fx.CreateDomain("acl");
        try
        {
            var (_, telnet, raw) = await fx.PortsAsync(name);
            await using (var root = Tools.Start("socat", "-", $"TCP:127.0.0.1:{raw}"))
            {
                await root.WaitForAsync("read-write");
                await root.SendAsync("echo secret-$((9*9))\n");
                await root.WaitForAsync("secret-81");
            }
            string[] asNobody = ["--reuid=nobody", "--regid=nogroup", "--clear-groups", "socat", "-", $"TCP:127.0.0.1:{raw}"];
            await using (var nobody = Tools.Start("setpriv", asNobody))
            {
                await nobody.WaitForAsync($"token for console {name}: ");
                await nobody.SendAsync("0123456789abcdef0123456789abcdef\n");
                await nobody.WaitForAsync("access denied");
                await nobody.WaitExitAsync();
                Assert.DoesNotContain("secret-81", nobody.Text);
            }
            var (code, token) = fx.Xenio("console", "--token", name);
            Assert.True(code == 0, token);
            token = token.Trim();
            Assert.Matches("^[0-9a-f]{32}$", token);
            await using (var withToken = Tools.Start("setpriv", asNobody))
            {
                await withToken.WaitForAsync($"token for console {name}: ");
                await withToken.SendAsync(token + "\n");
                await withToken.WaitForAsync("secret-81"); // the scrollback
            }
            // The real telnet client as nobody: asked for the token, refused without it.
            if (Requires.Which("telnet") is not null && Requires.Which("tmux") is not null)
            {
                using var tmux = new Tmux();
                tmux.Start("n", $"sh -c 'setpriv --reuid=nobody --regid=nogroup --clear-groups telnet 127.0.0.1 {telnet}; echo telnet-exited; sleep 60'");
                await tmux.WaitForAsync("n", $"token for console {name}:");
                tmux.Type("n", "not-the-token");
                tmux.SendKeys("n", "Enter");
                await tmux.WaitForAsync("n", "telnet-exited");
                var screen = tmux.Capture("n");
                Assert.Contains("access denied", screen);
                Assert.DoesNotContain("secret-81", screen);
            }
            // nobody cannot even reach the API socket (0660, root and the xenio group).
            var api = Tools.Run("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                "socat", "-", $"UNIX-CONNECT:{fx.ApiSocket}");
            Assert.NotEqual(0, api.Exit);
        }
        finally
        {
            fx.Destroy(name);
        }
    }

    [SkippableFact]
    public async Task Xenio_console_attaches_in_raw_mode_and_ctrl_bracket_detaches_restoring_the_terminal()
    {
        await StartAsync("tmux", "socat");
        var name = fx.CreateDomain("cli");
        var dir = Directory.CreateTempSubdirectory("xenio-console-cli").FullName;
        try
        {
            await fx.PortsAsync(name);
            using var tmux = new Tmux();
            var before = Path.Combine(dir, "before");
            var after = Path.Combine(dir, "after");
            tmux.Start("c", $"sh -c 'stty -g > {before}; {fx.XenioCommand("console")} {name}; echo exit=$?; stty -g > {after}; echo DETACHED; sleep 60'");
            await tmux.WaitForAsync("c", "Ctrl-] detaches");
            await RunAsync(tmux, "c", "echo cli-$((7*6))", "cli-42");
            tmux.SendKeys("c", "C-]");
            await tmux.WaitForAsync("c", "DETACHED");
            Assert.Contains("exit=0", tmux.Capture("c"));
            Assert.Equal(File.ReadAllText(before), File.ReadAllText(after));

            // stdin not a terminal: bytes pass as they are, a 0x1d byte detaches; --force takes the writer role.
            var (_, _, raw) = await fx.PortsAsync(name);
            await using var writer = Tools.Start("socat", "-", $"TCP:127.0.0.1:{raw}");
            await writer.WaitForAsync("read-write");
            await using var piped = Tools.Start("dotnet", Path.Combine(AppContext.BaseDirectory, "xenio.dll"), "console", "--run-dir", fx.Run, name, "--force");
            await piped.WaitForAsync("read-write (forced)");
            await writer.WaitForAsync("forced attach; you are read-only");
            await piped.SendAsync("echo piped-$((8*8))\n");
            await piped.WaitForAsync("piped-64");
            await piped.SendAsync("\x1d");
            await piped.WaitExitAsync();

            var missing = fx.Xenio("console", "no-such-domain");
            Assert.Equal(1, missing.Code);
            Assert.Contains("no console for 'no-such-domain'", missing.Output);
        }
        finally
        {
            fx.Destroy(name);
            Directory.Delete(dir, true);
        }
    }

    [SkippableFact]
    public async Task A_destroyed_domain_closes_its_console_keeps_its_log_and_a_restarted_consoled_picks_domains_up()
    {
        await StartAsync("socat", "xenstore-read");
        var keep = fx.CreateDomain("stay");
        var gone = fx.CreateDomain("gone");
        try
        {
            var (_, _, goneRaw) = await fx.PortsAsync(gone);
            await using (var viewer = Tools.Start("socat", "-", $"TCP:127.0.0.1:{goneRaw}"))
            {
                await viewer.WaitForAsync("read-write");
                await viewer.SendAsync("echo last-words-$((2*21))\n");
                await viewer.WaitForAsync("last-words-42");
                fx.Destroy(gone);
                await viewer.WaitExitAsync(); // consoled closed the connection
            }
            var log = Path.Combine(fx.ConsoleLogs, $"guest-{gone}.log");
            Assert.True(File.Exists(log), fx.DaemonLogs());
            Assert.Contains("last-words-42", File.ReadAllText(log));

            var (domid, _, before) = await fx.PortsAsync(keep);
            await fx.KillConsoledAsync();
            await fx.StartConsoledAsync();
            var (_, telnetAfter, raw) = await fx.PortsAsync(keep);
            // consoled serves (and lists) a console first, then publishes its port: until then xenstore
            // still holds the port the killed consoled wrote.
            Assert.Equal(Port(telnetAfter), await fx.XenstoreReadWhenAsync($"/local/domain/{domid}/console/telnet-port", Port(telnetAfter)));
            await using var again = Tools.Start("socat", "-", $"TCP:127.0.0.1:{raw}");
            await again.WaitForAsync("read-write");
            await again.SendAsync("echo still-here-$((3*11))\n");
            await again.WaitForAsync("still-here-33");
            _ = before;
        }
        finally
        {
            fx.Destroy(keep);
        }
    }

    [SkippableFact]
    public async Task A_guest_printing_a_megabyte_loses_nothing_in_the_log_and_the_viewer_sees_the_end()
    {
        await StartAsync("socat");
        var name = fx.CreateDomain("seq");
        try
        {
            var (_, _, raw) = await fx.PortsAsync(name);
            await using var viewer = Tools.Start("socat", "-", $"TCP:127.0.0.1:{raw}");
            await viewer.WaitForAsync("read-write");
            var watch = System.Diagnostics.Stopwatch.StartNew();
            // 150,000 lines, 1.04 MB: the 2 KiB ring wraps hundreds of times and init waits on it when full.
            await viewer.SendAsync("seq 1 150000; echo seq-$((10*10))-done\n");
            await viewer.WaitForAsync("seq-100-done", timeoutSeconds: 120);
            output.WriteLine($"1.04 MB from the guest's shell to a socat viewer in {watch.Elapsed.TotalSeconds:0.00} s");
            var log = Path.Combine(fx.ConsoleLogs, $"guest-{name}.log");
            string text = "";
            for (int i = 0; i < 100 && !text.Contains("seq-100-done", StringComparison.Ordinal); i++)
            {
                await Task.Delay(50);
                text = File.ReadAllText(log);
            }
            var lines = text.Split("\r\n");
            int first = Array.IndexOf(lines, "1");
            Assert.True(first >= 0, "no '1' line in the log");
            for (int n = 1; n <= 150000; n++) Assert.Equal(n.ToString(CultureInfo.InvariantCulture), lines[first + n - 1]);
        }
        finally
        {
            fx.Destroy(name);
        }
    }

    [SkippableFact]
    public async Task A_telnet_break_then_o_is_sysrq_poweroff_and_the_console_closes_with_the_domain()
    {
        await StartAsync("telnet", "tmux");
        var name = fx.CreateDomain("brk");
        try
        {
            var (_, telnet, _) = await fx.PortsAsync(name);
            using var tmux = new Tmux();
            tmux.Start("k", $"sh -c 'telnet 127.0.0.1 {telnet}; echo telnet-exited; sleep 60'");
            await tmux.WaitForAsync("k", "read-write");
            await RunAsync(tmux, "k", "echo up-$((1+2))", "up-3");
            // The telnet client's own escape (Ctrl-]), then its `send brk`: IAC BRK to consoled, whose next key is SysRq.
            tmux.SendKeys("k", "C-]");
            await tmux.WaitForAsync("k", "telnet>");
            tmux.Type("k", "send brk");
            tmux.SendKeys("k", "Enter");
            tmux.Type("k", "o");
            // sysrq o: the guest powers off, on_poweroff=destroy removes it, consoled closes its console.
            await tmux.WaitForAsync("k", "telnet-exited");
            Assert.Contains("Connection closed by foreign host", tmux.Capture("k"));
            var log = Path.Combine(fx.ConsoleLogs, $"guest-{name}.log");
            Assert.Contains("up-3", File.ReadAllText(log));
        }
        finally
        {
            fx.Destroy(name);
        }
    }
}
