using System.CommandLine;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using XenIo.Consoled.Daemon;
using static XenIo.Cli.Interop.Libc;

namespace XenIo.Cli.Verbs;

/// <summary>
/// <c>xenio console DOMAIN</c>: attach to a domain's console through consoled's API socket, like
/// <c>xl console</c>: the terminal goes raw while attached and is restored on exit, Ctrl-] detaches.
/// Works with stdin not a terminal too (bytes pass as they are; a 0x1d byte detaches).
/// </summary>
internal static class ConsoleVerb
{
    /// <summary>Ctrl-]: xl console's detach key.</summary>
    public const byte DetachKey = 0x1d;

    public static Command Build()
    {
        var runDir = HyperdVerb.RunDirOption();
        var domain = new Argument<string>("domain") { Description = "domain name or id", Arity = ArgumentArity.ZeroOrOne };
        var force = new Option<bool>("--force") { Description = "take the writer role from whoever has it" };
        var showToken = new Option<bool>("--token") { Description = "print the console's token (root and the xenio group only) instead of attaching" };
        var auth = new Option<string>("--auth") { Description = "the console's token, for users who are not administrators (default: $XENIO_CONSOLE_TOKEN)" };
        var list = new Option<bool>("--list") { Description = "list consoles: domid name telnet-port raw-port" };
        var command = new Command("console", "attach to a domain's console (Ctrl-] detaches; Ctrl-E c ? for consoled's commands)")
            { runDir, domain, force, showToken, auth, list };
        command.SetAction(parse =>
        {
            var run = Path.GetFullPath(HyperdVerb.RunDirectory(parse.GetValue(runDir)));
            var socketPath = ConsoledDaemonOptions.ApiSocketPath(run);
            var target = parse.GetValue(domain);
            try
            {
                if (parse.GetValue(list)) return Query(socketPath, "list", printAll: true);
                if (target is null or "")
                {
                    Console.Error.WriteLine("xenio console: which domain? (xenio console DOMAIN)");
                    return 2;
                }
                if (target.Any(char.IsWhiteSpace))
                {
                    Console.Error.WriteLine($"xenio console: '{target}' is not a domain name");
                    return 2;
                }
                if (parse.GetValue(showToken)) return Query(socketPath, $"token {target}", printAll: false);
                var token = parse.GetValue(auth) is { Length: > 0 } a ? a : Environment.GetEnvironmentVariable("XENIO_CONSOLE_TOKEN");
                if (token is not null && !token.All(char.IsAsciiHexDigit))
                {
                    Console.Error.WriteLine("xenio console: a token is hexadecimal");
                    return 2;
                }
                return Attach(socketPath, target, parse.GetValue(force), token);
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.AccessDenied)
            {
                Console.Error.WriteLine($"xenio console: {socketPath}: permission denied (root and the xenio group); others reach the console with telnet and its token");
                return 1;
            }
            catch (SocketException e)
            {
                Console.Error.WriteLine($"xenio console: consoled is not answering on {socketPath} ({e.Message}); start it with `xenio up`");
                return 1;
            }
        });
        return command;
    }

    private static Socket Connect(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Connect(new UnixDomainSocketEndPoint(path));
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private static int Query(string path, string request, bool printAll)
    {
        using var socket = Connect(path);
        socket.Send(Encoding.ASCII.GetBytes(request + "\n"));
        var reply = new MemoryStream();
        var buffer = new byte[4096];
        int n;
        while ((n = socket.Receive(buffer)) > 0) reply.Write(buffer, 0, n);
        var text = Encoding.UTF8.GetString(reply.ToArray()).TrimEnd('\n');
        if (text.StartsWith("error ", StringComparison.Ordinal))
        {
            Console.Error.WriteLine($"xenio console: {text[6..]}");
            return 1;
        }
        Console.WriteLine(printAll ? text : text.StartsWith("ok ", StringComparison.Ordinal) ? text[3..] : text);
        return 0;
    }

    /// <summary>Reads the reply line byte by byte: what follows it is already console output.</summary>
    private static string ReadLine(Socket socket)
    {
        var line = new List<byte>();
        var one = new byte[1];
        while (line.Count < ConsoleApiRequest.MaxLineBytes && socket.Receive(one) == 1 && one[0] != (byte)'\n') line.Add(one[0]);
        return Encoding.UTF8.GetString(line.ToArray());
    }

    private static unsafe int Attach(string path, string domain, bool force, string? token)
    {
        using var socket = Connect(path);
        socket.Send(Encoding.ASCII.GetBytes($"attach {domain}{(force ? " force" : "")}{(token is null ? "" : " token " + token)}\n"));
        var reply = ReadLine(socket);
        if (!reply.StartsWith("ok ", StringComparison.Ordinal))
        {
            Console.Error.WriteLine($"xenio console: {(reply.StartsWith("error ", StringComparison.Ordinal) ? reply[6..] : "consoled closed the connection")}");
            return 1;
        }
        bool tty = IsATty(0) == 1;
        byte* saved = stackalloc byte[TermiosSize];
        if (tty)
        {
            if (TcGetAttr(0, saved) != 0) tty = false;
            else
            {
                byte* raw = stackalloc byte[TermiosSize];
                new Span<byte>(saved, TermiosSize).CopyTo(new Span<byte>(raw, TermiosSize));
                CfMakeRaw(raw);
                TcSetAttr(0, TCSANOW, raw);
                WriteStderr($"Connected to {reply[3..]}; Ctrl-] detaches\r\n");
            }
        }
        var detached = new ManualResetEventSlim();
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; detached.Set(); });
        using var hup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, c => { c.Cancel = true; detached.Set(); });
        // Raw mode sends Ctrl-C to the guest; a SIGINT from elsewhere still restores the terminal first.
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; detached.Set(); });
        using var quit = PosixSignalRegistration.Create(PosixSignal.SIGQUIT, c => { c.Cancel = true; detached.Set(); });
        try
        {
            var output = new Thread(() => Output(socket, detached), 256 * 1024) { IsBackground = true, Name = "console output" };
            var input = new Thread(() => Input(socket, detached), 256 * 1024) { IsBackground = true, Name = "console input" };
            output.Start();
            input.Start();
            detached.Wait();
        }
        finally
        {
            if (tty)
            {
                TcSetAttr(0, TCSANOW, saved);
                WriteStderr("\n");
            }
        }
        return 0;
    }

    /// <summary>
    /// A standard descriptor as a plain stream. Not System.Console's streams: once .NET's console is
    /// initialised on a terminal it manages the terminal's modes itself and undoes our raw mode.
    /// </summary>
    private static FileStream StandardStream(int fd, FileAccess access) =>
        new(new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: false), access, bufferSize: 0);

    private static void WriteStderr(string text)
    {
        using var stderr = StandardStream(2, FileAccess.Write);
        stderr.Write(Encoding.UTF8.GetBytes(text));
    }

    /// <summary>Console output to stdout until consoled closes the connection.</summary>
    private static void Output(Socket socket, ManualResetEventSlim done)
    {
        using var stdout = StandardStream(1, FileAccess.Write);
        var buffer = new byte[16 * 1024];
        try
        {
            int n;
            while ((n = socket.Receive(buffer)) > 0)
            {
                stdout.Write(buffer, 0, n);
                stdout.Flush();
            }
        }
        catch (Exception e) when (e is SocketException or IOException or ObjectDisposedException)
        {
        }
        done.Set();
    }

    /// <summary>Keystrokes to the console until Ctrl-]; at the end of stdin we stop sending and keep printing.</summary>
    private static void Input(Socket socket, ManualResetEventSlim done)
    {
        using var stdin = StandardStream(0, FileAccess.Read);
        var buffer = new byte[4096];
        try
        {
            int n;
            while ((n = stdin.Read(buffer, 0, buffer.Length)) > 0)
            {
                int detach = Array.IndexOf(buffer, DetachKey, 0, n);
                if (detach >= 0)
                {
                    if (detach > 0) socket.Send(buffer, 0, detach, SocketFlags.None);
                    done.Set();
                    return;
                }
                socket.Send(buffer, 0, n, SocketFlags.None);
            }
            socket.Shutdown(SocketShutdown.Send);
        }
        catch (Exception e) when (e is SocketException or IOException or ObjectDisposedException)
        {
            done.Set();
        }
    }
}
