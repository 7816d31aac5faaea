using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using XenIo.Consoled.Access;
using XenIo.Consoled.Daemon;
using XenIo.Consoled.Domains;
using XenIo.Hypervisor.Events;
using XenIo.Tests;
using Xunit;

namespace XenIo.Consoled.Tests;

public sealed class ApiRequestTests
{
    [Theory]
    [InlineData("list", ConsoleApiVerb.List, null, false, null)]
    [InlineData("token web", ConsoleApiVerb.Token, "web", false, null)]
    [InlineData("attach web", ConsoleApiVerb.Attach, "web", false, null)]
    [InlineData("attach 7 force", ConsoleApiVerb.Attach, "7", true, null)]
    [InlineData("attach web token abc force", ConsoleApiVerb.Attach, "web", true, "abc")]
    [InlineData("  attach   web  ", ConsoleApiVerb.Attach, "web", false, null)]
    public void Parses_the_requests(string line, ConsoleApiVerb verb, string? domain, bool force, string? token)
    {
        Assert.True(ConsoleApiRequest.TryParse(line, out var r, out var error), error);
        Assert.Equal(new ConsoleApiRequest(verb, domain, force, token), r);
        Assert.True(ConsoleApiRequest.TryParse(r.ToString(), out var again, out _));
        Assert.Equal(r, again);
    }

    [Theory]
    [InlineData("")]
    [InlineData("list web")]
    [InlineData("token")]
    [InlineData("token a b")]
    [InlineData("attach")]
    [InlineData("attach web force force")]
    [InlineData("attach web token")]
    [InlineData("attach web please")]
    [InlineData("rm -rf /")]
    public void Refuses_anything_else(string line)
    {
        Assert.False(ConsoleApiRequest.TryParse(line, out _, out var error));
        Assert.NotEmpty(error);
    }
}

[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class ApiServerTests
{
    private sealed class Api : IAsyncDisposable
    {
        public Api(Harness h)
        {
            Path = System.IO.Path.Combine(h.LogDirectory, "consoled.sock");
            Server = new ConsoleApiServer(Path, h.Service, () => null, new AdministratorCheck(null), NullLogger.Instance);
        }

        public string Path { get; }

        public ConsoleApiServer Server { get; }

        public Socket Connect(string request)
        {
            var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            s.Connect(new UnixDomainSocketEndPoint(Path));
            s.Send(Encoding.ASCII.GetBytes(request + "\n"));
            return s;
        }

        public async ValueTask DisposeAsync() => await Server.DisposeAsync();
    }

    private static async Task<string> ReadUntilAsync(Socket s, StringBuilder seen, string text)
    {
        var buffer = new byte[4096];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        while (!seen.ToString().Contains(text, StringComparison.Ordinal))
        {
            int n = await s.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
            if (n == 0) break;
            seen.Append(Encoding.Latin1.GetString(buffer, 0, n));
        }
        return seen.ToString();
    }

    private static async Task<string> ReadAllAsync(Socket s)
    {
        var seen = new StringBuilder();
        var buffer = new byte[4096];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        int n;
        while ((n = await s.ReceiveAsync(buffer, SocketFlags.None, timeout.Token)) > 0) seen.Append(Encoding.Latin1.GetString(buffer, 0, n));
        return seen.ToString();
    }

    [SkippableFact]
    public async Task Root_attaches_through_the_socket_sees_the_scrollback_and_types_into_the_guest()
    {
        Requires.Root("SO_PEERCRED says root: an administrator");
        await using var h = new Harness();
        var (guest, _) = h.AddGuest("web");
        await guest.WriteAsync("boot messages\r\n"u8.ToArray());
        await using var api = new Api(h);
        using var s = api.Connect("attach web");
        var seen = new StringBuilder();
        Assert.StartsWith("ok web\n", await ReadUntilAsync(s, seen, "boot messages"));
        await guest.WriteAsync(new byte[] { 0xff, 0x00, (byte)'l', (byte)'i', (byte)'v', (byte)'e' });
        await ReadUntilAsync(s, seen, "live");
        Assert.Contains("\u00ff\0live", seen.ToString()); // raw: no IAC doubling on the API socket
        s.Send("typed\r"u8);
        var input = new byte[16];
        int n = await guest.ReadAsync(input).AsTask().WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal("typed\r", Encoding.ASCII.GetString(input, 0, n));
    }

    [SkippableFact]
    public async Task Force_takes_the_writer_role_from_a_telnet_viewer()
    {
        Requires.Root("SO_PEERCRED and the TCP socket owner say root");
        await using var h = new Harness();
        var (_, reg) = h.AddGuest("web");
        await using var telnet = await RawClient.ConnectAsync(reg.Ports.RawPort!.Value);
        for (int i = 0; i < 500 && reg.Hub.Writer is null; i++) await Task.Delay(10);
        var first = reg.Hub.Writer;
        Assert.NotNull(first);
        await using var api = new Api(h);
        using var s = api.Connect("attach web force");
        await ReadUntilAsync(s, new StringBuilder(), "read-write (forced)");
        Assert.NotSame(first, reg.Hub.Writer);
        Assert.Contains("(xenio console)", reg.Hub.Writer!.Description);
    }

    [SkippableFact]
    public async Task Lists_consoles_shows_tokens_to_root_and_refuses_unknown_consoles_and_bad_requests()
    {
        Requires.Root("SO_PEERCRED says root: an administrator");
        await using var h = new Harness();
        var (_, reg) = h.AddGuest("web");
        await using var api = new Api(h);
        Assert.Equal($"- web {reg.Ports.TelnetPort} {reg.Ports.RawPort}\n", await ReadAllAsync(api.Connect("list")));
        Assert.Equal($"ok {reg.Token}\n", await ReadAllAsync(api.Connect("token web")));
        Assert.StartsWith("error no console", await ReadAllAsync(api.Connect("attach nosuch")));
        Assert.StartsWith("error no console", await ReadAllAsync(api.Connect("token nosuch")));
        Assert.StartsWith("error unknown request", await ReadAllAsync(api.Connect("shell")));
        using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        s.Connect(new UnixDomainSocketEndPoint(api.Path));
        s.Send(new byte[ConsoleApiRequest.MaxLineBytes]);
        Assert.StartsWith("error request line too long", await ReadAllAsync(s));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite, File.GetUnixFileMode(api.Path));
    }

    [SkippableFact]
    public async Task A_user_who_is_not_an_administrator_needs_the_token_on_the_socket()
    {
        var setpriv = Requires.Tool("setpriv");
        var socat = Requires.Tool("socat");
        Requires.Root("switches to the nobody user");
        await using var h = new Harness(o => o.AdministratorGroup = null);
        var (guest, reg) = h.AddGuest("web");
        await guest.WriteAsync("root shell secret\r\n"u8.ToArray());
        // The socket lives in a directory nobody may enter; a world-accessible copy of the path for this test.
        var dir = Directory.CreateTempSubdirectory("xenio-api-open").FullName;
        File.SetUnixFileMode(dir, (UnixFileMode)0x1ff);
        var path = Path.Combine(dir, "consoled.sock");
        await using var server = new ConsoleApiServer(path, h.Service, () => null, new AdministratorCheck(null), NullLogger.Instance);
        File.SetUnixFileMode(path, (UnixFileMode)0x1b6);
        try
        {
            string AsNobody(string request)
            {
                var psi = new System.Diagnostics.ProcessStartInfo(setpriv) { RedirectStandardOutput = true, RedirectStandardInput = true, UseShellExecute = false };
                foreach (var a in new[] { "--reuid=nobody", "--regid=nogroup", "--clear-groups", socat, "-t", "2", "-", $"UNIX-CONNECT:{path}" }) psi.ArgumentList.Add(a);
                using var p = System.Diagnostics.Process.Start(psi)!;
                p.StandardInput.Write(request + "\n");
                p.StandardInput.Close();
                var output = p.StandardOutput.ReadToEnd();
                p.WaitForExit();
                return output;
            }
            Assert.StartsWith("error access denied", AsNobody("attach web"));
            Assert.StartsWith("error access denied", AsNobody("attach web token 0123456789abcdef0123456789abcdef"));
            Assert.StartsWith("error only root", AsNobody("token web"));
            var admitted = AsNobody($"attach web token {reg.Token}");
            Assert.StartsWith("ok web\n", admitted);
            Assert.Contains("root shell secret", admitted);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}

public sealed class DoorbellTests
{
    private sealed class FakeChannel(bool peerClosed) : IEventChannel
    {
        public int Notified;
        public int Waits;
        public uint Port => 5;
        public bool PeerClosed { get; set; } = peerClosed;
        public void Notify() => Notified++;

        public ValueTask<bool> WaitAsync(CancellationToken cancellationToken = default)
        {
            Waits++;
            return ValueTask.FromResult(!PeerClosed);
        }

        public bool Wait(int timeoutMs) => true;
    }

    [Fact]
    public async Task A_live_channel_is_waited_on_and_notified()
    {
        var channel = new FakeChannel(peerClosed: false);
        var doorbell = new EventChannelConsoleDoorbell(channel);
        await doorbell.WaitAsync(CancellationToken.None);
        doorbell.Notify();
        Assert.Equal(1, channel.Waits);
        Assert.Equal(1, channel.Notified);
        Assert.False(doorbell.Polling);
    }

    [Fact]
    public async Task A_channel_whose_peer_is_gone_becomes_a_poll_that_still_honours_cancellation()
    {
        var channel = new FakeChannel(peerClosed: true);
        var doorbell = new EventChannelConsoleDoorbell(channel);
        Assert.True(doorbell.Polling);
        await doorbell.WaitAsync(CancellationToken.None); // returns after the poll interval instead of never
        Assert.Equal(0, channel.Waits);
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => doorbell.WaitAsync(cancelled.Token).AsTask());
    }
}
