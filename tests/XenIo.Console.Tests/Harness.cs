using XenIo.Tests;
using System.Net;
using System.Net.Sockets;
using System.Text;
using XenIo.Consoled.Rings;

namespace XenIo.Consoled.Tests;

/// <summary>A started consoled with its own temp log directory; consoles come from in-process guests.</summary>
public sealed class Harness(Action<ConsoledOptions>? configure = null)
    : LocalConsoled(Directory.CreateTempSubdirectory("xenio-consoled").FullName, o =>
    {
        o.Multiplexer.AuthTimeout = TimeSpan.FromSeconds(5);
        configure?.Invoke(o);
    });

/// <summary>A TCP client that keeps everything it receives (as Latin-1, byte for byte).</summary>
public sealed class RawClient : IAsyncDisposable
{
    private readonly TcpClient _client;
    private readonly NetworkStream _stream;
    private readonly List<byte> _received = [];
    private readonly Task _reader;
    private readonly CancellationTokenSource _stop = new();

    private RawClient(TcpClient client, bool read)
    {
        _client = client;
        _stream = client.GetStream();
        _reader = read ? Task.Run(ReadLoopAsync) : Task.CompletedTask;
    }

    public static async Task<RawClient> ConnectAsync(int port, bool read = true, int receiveBuffer = 0)
    {
        var client = new TcpClient(AddressFamily.InterNetwork);
        if (receiveBuffer > 0) client.ReceiveBufferSize = receiveBuffer;
        await client.ConnectAsync(IPAddress.Loopback, port);
        return new RawClient(client, read);
    }

    public bool Closed { get; private set; }

    public byte[] Received
    {
        get { lock (_received) return _received.ToArray(); }
    }

    public string Text => Encoding.Latin1.GetString(Received);

    private async Task ReadLoopAsync()
    {
        var buffer = new byte[65536];
        try
        {
            while (true)
            {
                int n = await _stream.ReadAsync(buffer, _stop.Token);
                if (n == 0) break;
                lock (_received) _received.AddRange(buffer.AsSpan(0, n).ToArray());
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException)
        {
        }
        Closed = true;
    }

    public Task SendAsync(string text) => SendAsync(Encoding.Latin1.GetBytes(text));

    public async Task SendAsync(byte[] bytes) => await _stream.WriteAsync(bytes);

    public async Task<string> WaitForAsync(string text, int timeoutSeconds = 20)
    {
        var deadline = DateTime.UtcNow.AddSeconds(timeoutSeconds);
        while (DateTime.UtcNow < deadline)
        {
            var t = Text;
            if (t.Contains(text, StringComparison.Ordinal)) return t;
            if (Closed)
            {
                if (Text.Contains(text, StringComparison.Ordinal)) return Text;
                break;
            }
            await Task.Delay(10);
        }
        throw new TimeoutException($"'{text}' not seen; got: {Text[^Math.Min(Text.Length, 400)..]}");
    }

    public async Task WaitClosedAsync(int timeoutSeconds = 20)
    {
        var deadline = DateTime.UtcNow.AddSeconds(timeoutSeconds);
        while (!Closed && DateTime.UtcNow < deadline) await Task.Delay(10);
        if (!Closed) throw new TimeoutException("connection not closed");
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _client.Dispose();
        try
        {
            await _reader;
        }
        catch (Exception)
        {
        }
    }
}

public static class GuestExtensions
{
    public static ValueTask PrintAsync(this LocalConsoleFrontend guest, string text) =>
        guest.WriteAsync(Encoding.Latin1.GetBytes(text));

    /// <summary>Reads guest input until <paramref name="text"/> has arrived.</summary>
    public static async Task<string> ExpectInputAsync(this LocalConsoleFrontend guest, string text, int timeoutSeconds = 20)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(timeoutSeconds));
        var got = new StringBuilder();
        var buffer = new byte[1024];
        while (!got.ToString().Contains(text, StringComparison.Ordinal))
        {
            int n = await guest.ReadAsync(buffer, cts.Token);
            got.Append(Encoding.Latin1.GetString(buffer, 0, n));
        }
        return got.ToString();
    }
}
