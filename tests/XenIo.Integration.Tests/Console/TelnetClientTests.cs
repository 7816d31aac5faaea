using System.Net.Sockets;
using System.Text;
using XenIo.Tests;
using Xunit;

namespace XenIo.Integration.Tests.Consoles;

/// <summary>consoled driven by the real clients users have: telnet (under tmux), socat, QEMU.</summary>
public sealed class TelnetClientTests
{
    [SkippableFact]
    public async Task Telnet_attaches_runs_a_command_and_sees_its_output()
    {
        Requires.Tool("telnet");
        Requires.Tool("tmux");
        await using var h = new ConsoleHarness();
        var (guest, reg) = h.AddGuest("web");
        await using var shell = new EchoShell(guest);
        using var tmux = new Tmux();
        tmux.Start("t", $"telnet 127.0.0.1 {reg.Ports.TelnetPort}");
        await tmux.WaitForAsync("t", "guest login shell");
        await tmux.WaitForAsync("t", "read-write");
        tmux.Type("t", "uname -a");
        tmux.SendKeys("t", "Enter");
        await tmux.WaitForAsync("t", "ran: uname -a");
        Assert.Contains("uname -a\r", shell.Input);
        // The guest echoes; telnet must not echo locally too (server WILL ECHO), so the command appears once per line.
        var screen = tmux.Capture("t");
        Assert.DoesNotContain("uname -auname -a", screen);
    }

    [SkippableFact]
    public async Task Two_telnet_viewers_share_output_the_spectator_cannot_type_and_force_attach_works()
    {
        Requires.Tool("telnet");
        Requires.Tool("tmux");
        await using var h = new ConsoleHarness();
        var (guest, reg) = h.AddGuest("shared");
        await using var shell = new EchoShell(guest);
        using var tmux = new Tmux();
        tmux.Start("a", $"telnet 127.0.0.1 {reg.Ports.TelnetPort}");
        await tmux.WaitForAsync("a", "read-write");
        tmux.Start("b", $"telnet 127.0.0.1 {reg.Ports.TelnetPort}");
        await tmux.WaitForAsync("b", "read-only");
        await tmux.WaitForAsync("b", "guest login shell"); // the scrollback replay

        tmux.Type("b", "from-spectator");
        tmux.SendKeys("b", "Enter");
        tmux.Type("a", "from-writer");
        tmux.SendKeys("a", "Enter");
        await tmux.WaitForAsync("a", "ran: from-writer");
        await tmux.WaitForAsync("b", "ran: from-writer");
        Assert.DoesNotContain("from-spectator", shell.Input);

        tmux.SendKeys("b", "C-e", "c", "f");
        await tmux.WaitForAsync("b", "read-write (forced)");
        await tmux.WaitForAsync("a", "forced attach; you are read-only");
        tmux.Type("a", "old-writer");
        tmux.SendKeys("a", "Enter");
        tmux.Type("b", "new-writer");
        tmux.SendKeys("b", "Enter");
        await tmux.WaitForAsync("a", "ran: new-writer");
        Assert.DoesNotContain("old-writer", shell.Input);
    }

    private static byte[] AllBytes => Enumerable.Range(0, 256).Select(i => (byte)i).ToArray();

    private static int IndexOf(byte[] haystack, byte[] needle)
    {
        for (int i = 0; i + needle.Length <= haystack.Length; i++)
        {
            if (haystack.AsSpan(i, needle.Length).SequenceEqual(needle)) return i;
        }
        return -1;
    }

    [SkippableFact]
    public async Task Bytes_0_to_255_reach_socat_on_the_raw_port_intact()
    {
        var socat = Requires.Tool("socat");
        await using var h = new ConsoleHarness();
        var (guest, reg) = h.AddGuest("bin");
        await using var client = Tools.Start(socat, "-", $"TCP:127.0.0.1:{reg.Ports.RawPort}");
        await client.WaitForAsync("read-write");
        await guest.WriteAsync("<<"u8.ToArray());
        await guest.WriteAsync(AllBytes);
        await guest.WriteAsync(">>"u8.ToArray());
        await client.WaitForAsync(">>");
        var output = client.Output;
        int at = IndexOf(output, "<<"u8.ToArray());
        Assert.True(at >= 0);
        Assert.Equal([(byte)'<', (byte)'<', .. AllBytes, (byte)'>', (byte)'>'], output[at..(at + 260)]);
    }

    [SkippableFact]
    public async Task Bytes_0_to_255_reach_a_binary_telnet_intact()
    {
        var telnet = Requires.Tool("telnet");
        await using var h = new ConsoleHarness();
        var (guest, reg) = h.AddGuest("bin");
        // -8: 8-bit data path; -E: no escape character. stdin is a pipe, stdout raw bytes.
        await using var client = Tools.Start(telnet, "-8", "-E", "127.0.0.1", reg.Ports.TelnetPort.ToString(System.Globalization.CultureInfo.InvariantCulture));
        await client.WaitForAsync("read-write");
        await Task.Delay(200); // let the BINARY negotiation settle before the payload
        Assert.True(reg.Hub.ViewerCount == 1);
        await guest.WriteAsync("<<"u8.ToArray());
        await guest.WriteAsync(AllBytes);
        await guest.WriteAsync(">>"u8.ToArray());
        await client.WaitForAsync(">>");
        var output = client.Output;
        int at = IndexOf(output, "<<"u8.ToArray());
        Assert.True(at >= 0);
        Assert.Equal([(byte)'<', (byte)'<', .. AllBytes, (byte)'>', (byte)'>'], output[at..(at + 260)]);
    }

    [SkippableFact]
    public async Task A_local_user_who_is_not_an_administrator_needs_the_token()
    {
        var socat = Requires.Tool("socat");
        var setpriv = Requires.Tool("setpriv");
        Requires.Root("switches to the nobody user");
        await using var h = new ConsoleHarness(o => o.AdministratorGroup = null);
        var (guest, reg) = h.AddGuest("private");
        await guest.WriteAsync("root shell secret\r\n"u8.ToArray());
        string[] asNobody = ["--reuid=nobody", "--regid=nogroup", "--clear-groups", socat, "-", $"TCP:127.0.0.1:{reg.Ports.RawPort}"];

        await using (var nobody = Tools.Start(setpriv, asNobody))
        {
            await nobody.WaitForAsync("token for console private: ");
            await nobody.SendAsync("let me in\n");
            await nobody.WaitForAsync("access denied");
            await nobody.WaitExitAsync();
            Assert.DoesNotContain("secret", nobody.Text);
        }
        await using (var withToken = Tools.Start(setpriv, asNobody))
        {
            await withToken.WaitForAsync("token for console private: ");
            await withToken.SendAsync($"token {reg.Token}\n");
            await withToken.WaitForAsync("root shell secret");
        }
        // root on loopback is let straight in by the owner of its socket.
        await using var root = Tools.Start(socat, "-", $"TCP:127.0.0.1:{reg.Ports.RawPort}");
        await root.WaitForAsync("root shell secret");
        Assert.DoesNotContain("token for console", root.Text);
    }

    [SkippableFact]
    public async Task A_stalled_socat_does_not_hold_up_the_guest_or_another_viewer()
    {
        var socat = Requires.Tool("socat");
        await using var h = new ConsoleHarness();
        var (guest, reg) = h.AddGuest("flood");
        // This socat writes into a program that never reads: its TCP window closes and stays closed.
        await using var stalled = Tools.Start(socat, "-u", $"TCP:127.0.0.1:{reg.Ports.RawPort}", "SYSTEM:sleep 120");
        for (int i = 0; i < 500 && reg.Hub.ViewerCount == 0; i++) await Task.Delay(10);
        await using var reader = Tools.Start(socat, "-u", $"TCP:127.0.0.1:{reg.Ports.RawPort}", "-");
        await reader.WaitForAsync("read-only");
        var line = Encoding.ASCII.GetBytes(new string('x', 1023) + "\n");
        // The guest is never held up: all 8 MiB go out although one viewer reads nothing.
        for (int i = 0; i < 8192; i++) await guest.WriteAsync(line); // 8 MiB
        // The reading viewer keeps receiving. On a loaded machine it may itself fall behind and have
        // whole chunks dropped (with a marker), so the end marker is repeated until it arrives.
        var deadline = DateTime.UtcNow.AddSeconds(120);
        do
        {
            await guest.WriteAsync("DONE\r\n"u8.ToArray());
            await Task.Delay(200);
        }
        while (!reader.Text.Contains("DONE", StringComparison.Ordinal) && DateTime.UtcNow < deadline);
        Assert.Contains("DONE", reader.Text, StringComparison.Ordinal);
    }

    [SkippableFact]
    public async Task A_qemu_serial_console_is_reachable_over_telnet_and_survives_a_restart()
    {
        var qemu = Requires.Tool("qemu-system-x86_64");
        Requires.Tool("telnet");
        Requires.Tool("tmux");
        await using var h = new ConsoleHarness();
        var socketPath = Path.Combine(h.LogDirectory, "qemu-serial.sock");
        var reg = h.Service.RegisterExternal(new XenIo.Consoled.ConsoleSpec("qemu-vm"), new UnixDomainSocketEndPoint(socketPath));
        using var tmux = new Tmux();
        tmux.Start("q", $"telnet 127.0.0.1 {reg.Ports.TelnetPort}");
        await tmux.WaitForAsync("q", "read-write");
        // SeaBIOS prints on the serial line when there is no display (-nographic); reboot-timeout makes it
        // print again every second, whenever consoled's (re)connection lands.
        string[] args = ["-display", "none", "-nodefaults", "-nographic", "-monitor", "none", "-m", "32",
            "-boot", "reboot-timeout=1000",
            "-chardev", $"socket,id=c,path={socketPath},server=on,wait=off", "-serial", "chardev:c"];
        await using (var vm = Tools.Start(qemu, args))
        {
            await tmux.WaitForAsync("q", "SeaBIOS", timeoutSeconds: 60);
        }
        tmux.SendKeys("q", "C-l");
        await tmux.WaitForAsync("q", "closed the console; reconnecting");
        File.Delete(socketPath);
        await using (var again = Tools.Start(qemu, args))
        {
            await tmux.WaitForAsync("q", "connected to", timeoutSeconds: 60);
            await tmux.WaitForAsync("q", "No bootable device", timeoutSeconds: 60);
        }
    }
}
