using XenIo.Tests;
using System.Diagnostics;
using System.Text;
using XenIo.Consoled;
using XenIo.Consoled.Rings;

namespace XenIo.Integration.Tests.Consoles;

/// <summary>consoled started in-process, with guests whose console rings live in this process.</summary>
public sealed class ConsoleHarness(Action<ConsoledOptions>? configure = null)
    : LocalConsoled(Directory.CreateTempSubdirectory("xenio-consoled-it").FullName, configure);

/// <summary>A guest "shell": echoes what it is sent and answers each line with "ran: line".</summary>
public sealed class EchoShell : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private readonly StringBuilder _input = new();

    public EchoShell(LocalConsoleFrontend guest)
    {
        _loop = Task.Run(() => LoopAsync(guest));
    }

    public string Input
    {
        get { lock (_input) return _input.ToString(); }
    }

    private async Task LoopAsync(LocalConsoleFrontend guest)
    {
        var buffer = new byte[1024];
        var line = new StringBuilder();
        try
        {
            await guest.WriteAsync("guest login shell\r\n# "u8.ToArray(), _stop.Token);
            while (true)
            {
                int n = await guest.ReadAsync(buffer, _stop.Token);
                var text = Encoding.Latin1.GetString(buffer, 0, n);
                lock (_input) _input.Append(text);
                foreach (char c in text)
                {
                    if (c is '\r' or '\n')
                    {
                        if (line.Length == 0) continue;
                        await guest.WriteAsync(Encoding.Latin1.GetBytes($"\r\nran: {line}\r\n# "), _stop.Token);
                        line.Clear();
                    }
                    else if (c != '\0')
                    {
                        line.Append(c);
                        await guest.WriteAsync(new[] { (byte)c }, _stop.Token); // the tty's echo
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _loop;
    }
}

/// <summary>Terminal clients under a private tmux server, killed at the end.</summary>
public sealed class Tmux : IDisposable
{
    private readonly string _socket = $"xenio-test-{Guid.NewGuid():N}";

    public void Start(string session, string command) =>
        Tools.Run("tmux", "-L", _socket, "new-session", "-d", "-s", session, "-x", "200", "-y", "50", command);

    public string Capture(string session) =>
        Tools.Run("tmux", "-L", _socket, "capture-pane", "-p", "-J", "-S", "-300", "-t", session).Output;

    public void SendKeys(string session, params string[] keys) =>
        Tools.Run("tmux", ["-L", _socket, "send-keys", "-t", session, .. keys]);

    public void Type(string session, string text) =>
        Tools.Run("tmux", "-L", _socket, "send-keys", "-t", session, "-l", text);

    public async Task<string> WaitForAsync(string session, string text, int timeoutSeconds = 30)
    {
        var deadline = DateTime.UtcNow.AddSeconds(timeoutSeconds);
        string screen = "";
        while (DateTime.UtcNow < deadline)
        {
            screen = Capture(session);
            if (screen.Contains(text, StringComparison.Ordinal)) return screen;
            await Task.Delay(50);
        }
        throw new TimeoutException($"'{text}' not on {session}'s screen:\n{screen}");
    }

    public void Dispose() => Tools.Run("tmux", "-L", _socket, "kill-server");
}

public static class Tools
{
    public static (int Exit, string Output) Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var output = p.StandardOutput.ReadToEndAsync();
        var error = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(30_000))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} did not finish");
        }
        return (p.ExitCode, output.Result + error.Result);
    }

    /// <summary>Starts a long-running client whose stdout is kept as raw bytes.</summary>
    public static BinaryProcess Start(string file, params string[] args) => new(file, args);
}

/// <summary>A child process with a pipe on stdin and its stdout collected byte for byte.</summary>
public sealed class BinaryProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly MemoryStream _output = new();
    private readonly Task _pump;

    public BinaryProcess(string file, string[] args)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        _process = Process.Start(psi)!;
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginErrorReadLine();
        _pump = Task.Run(async () =>
        {
            var buffer = new byte[65536];
            var stdout = _process.StandardOutput.BaseStream;
            int n;
            while ((n = await stdout.ReadAsync(buffer)) > 0)
            {
                lock (_output) _output.Write(buffer, 0, n);
            }
        });
    }

    public byte[] Output
    {
        get { lock (_output) return _output.ToArray(); }
    }

    public string Text => Encoding.Latin1.GetString(Output);

    public bool HasExited => _process.HasExited;

    public async Task SendAsync(string text)
    {
        await _process.StandardInput.BaseStream.WriteAsync(Encoding.Latin1.GetBytes(text));
        await _process.StandardInput.BaseStream.FlushAsync();
    }

    public async Task<string> WaitForAsync(string text, int timeoutSeconds = 30)
    {
        var deadline = DateTime.UtcNow.AddSeconds(timeoutSeconds);
        while (DateTime.UtcNow < deadline)
        {
            if (Text.Contains(text, StringComparison.Ordinal)) return Text;
            await Task.Delay(20);
        }
        throw new TimeoutException($"'{text}' not seen; got: {Text[^Math.Min(Text.Length, 400)..]}");
    }

    public async Task WaitExitAsync(int timeoutSeconds = 30)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(timeoutSeconds));
        await _process.WaitForExitAsync(cts.Token);
        await _pump;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync();
        try
        {
            await _pump;
        }
        catch (Exception)
        {
        }
        _process.Dispose();
    }
}
