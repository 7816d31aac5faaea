using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Transports;

namespace XenIo.Bench.Store;

/// <summary>
/// xenstored over its Unix socket against a raw request/response echo server over the same kind of
/// socket, measured in the same run with the same client loop: each client thread sends one request
/// and waits for its reply (as xenstore-utils and libxenstore do).
/// </summary>
public sealed class XenstoreBenchmark : ISystemBenchmark
{
    private static readonly TimeSpan Warmup = TimeSpan.FromMilliseconds(500);
    private static readonly TimeSpan Measure = TimeSpan.FromSeconds(2);
    private const int Rounds = 3;

    public string Name => "xenstore";

    public async Task RunAsync(BenchContext context, CancellationToken cancellationToken)
    {
        var dir = Path.Combine(context.WorkDirectory, "xenstore-" + Environment.ProcessId);
        Directory.CreateDirectory(dir);
        using var daemon = new Xenstored();
        await using var listener = new XenstoreSocketListener(daemon, XenstoreSocketListener.PathUnder(dir));
        var echoPath = Path.Combine(dir, "echo.sock");
        await using var echo = new EchoServer(echoPath);

        var read = Message(XsdSockmsgType.Read, "/local/domain/0/bench/key\0"u8);
        var write = Message(XsdSockmsgType.Write, "/local/domain/0/bench/key\0value-0123456789"u8);
        using (var setup = Connect(listener.SocketPath)) RoundTrip(setup, write, new byte[8192]);

        context.Report("xenstore.read.alloc_bytes_per_op", AllocatedPerRoundTrip(listener.SocketPath, read), "B/op",
            "bytes the whole process allocates per XS_READ round trip (the client loop allocates none)");
        var readC1 = Run(listener.SocketPath, read, 1, cancellationToken);
        context.Report("xenstore.read_ops_per_s.c1", readC1, "ops/s", "XS_READ over the Unix socket, 1 client");
        var writeC1 = Run(listener.SocketPath, write, 1, cancellationToken);
        context.Report("xenstore.write_ops_per_s.c1", writeC1, "ops/s", "XS_WRITE over the Unix socket, 1 client");
        // The ratio's two sides alternate, so load from elsewhere on the machine falls on both alike.
        double readC16 = 0, echoC16 = 0;
        for (var round = 0; round < Rounds; round++)
        {
            readC16 += Run(listener.SocketPath, read, 16, cancellationToken) / Rounds;
            echoC16 += Run(echoPath, read, 16, cancellationToken) / Rounds;
        }
        context.Report("xenstore.read_ops_per_s.c16", readC16, "ops/s", "XS_READ over the Unix socket, 16 clients");
        context.Report("xenstore.echo_ops_per_s.c16", echoC16, "ops/s", "raw request/response echo over a Unix socket, 16 clients");
        context.Report("xenstore.read.ratio_vs_echo.c16", readC16 / echoC16, "ratio",
            $"xenstore read {readC16:F0}/s vs echo {echoC16:F0}/s", target: 0.5);
        try { Directory.Delete(dir, true); } catch (IOException) { }
    }

    private static byte[] Message(XsdSockmsgType type, ReadOnlySpan<byte> payload)
    {
        var m = new byte[16 + payload.Length];
        XsdCodec.WriteHeader(m, type, 1, 0, (uint)payload.Length);
        payload.CopyTo(m.AsSpan(16));
        return m;
    }

    private static Socket Connect(string path)
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        s.Connect(new UnixDomainSocketEndPoint(path));
        return s;
    }

    /// <summary>Sends one request and reads exactly one framed reply.</summary>
    private static void RoundTrip(Socket s, byte[] request, byte[] buffer)
    {
        s.Send(request);
        var got = 0;
        while (got < 16) got += Receive(s, buffer.AsSpan(got));
        var len = 16 + (int)XsdCodec.ReadHeader(buffer).Len;
        while (got < len) got += Receive(s, buffer.AsSpan(got, len - got));
        if (XsdCodec.ReadHeader(buffer).Type == XsdSockmsgType.Error)
            throw new InvalidOperationException("xenstored answered " + Encoding.ASCII.GetString(buffer, 16, len - 16));
    }

    private static int Receive(Socket s, Span<byte> dest)
    {
        var n = s.Receive(dest);
        if (n <= 0) throw new IOException("server closed the connection");
        return n;
    }

    private static double AllocatedPerRoundTrip(string path, byte[] request)
    {
        const int n = 20_000;
        using var s = Connect(path);
        var buffer = new byte[8192];
        for (var i = 0; i < 2000; i++) RoundTrip(s, request, buffer);
        var before = GC.GetTotalAllocatedBytes(precise: true);
        for (var i = 0; i < n; i++) RoundTrip(s, request, buffer);
        return (GC.GetTotalAllocatedBytes(precise: true) - before) / (double)n;
    }

    private static double Run(string path, byte[] request, int clients, CancellationToken ct)
    {
        long total = 0;
        var measuring = 0;
        using var start = new Barrier(clients + 1);
        var threads = Enumerable.Range(0, clients).Select(_ => new Thread(() =>
        {
            using var s = Connect(path);
            var buffer = new byte[8192];
            long mine = 0;
            start.SignalAndWait();
            while (!ct.IsCancellationRequested)
            {
                RoundTrip(s, request, buffer);
                if (Volatile.Read(ref measuring) == 1) mine++;
                else if (Volatile.Read(ref measuring) == 2) break;
            }
            Interlocked.Add(ref total, mine);
        }) { IsBackground = true }).ToArray();
        foreach (var t in threads) t.Start();
        start.SignalAndWait();
        Thread.Sleep(Warmup);
        var sw = Stopwatch.StartNew();
        Volatile.Write(ref measuring, 1);
        Thread.Sleep(Measure);
        Volatile.Write(ref measuring, 2);
        var seconds = sw.Elapsed.TotalSeconds;
        foreach (var t in threads) t.Join();
        return total / seconds;
    }

    /// <summary>
    /// The baseline: for every framed request, the same bytes straight back — no parsing beyond the
    /// header, no store, no lock — served like xenstored's socket (one async loop per connection).
    /// </summary>
    private sealed class EchoServer : IAsyncDisposable
    {
        private readonly Socket _listen;
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _accept;

        public EchoServer(string path)
        {
            if (File.Exists(path)) File.Delete(path);
            _listen = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            _listen.Bind(new UnixDomainSocketEndPoint(path));
            _listen.Listen(128);
            _accept = AcceptAsync();
        }

        private async Task AcceptAsync()
        {
            while (true)
            {
                Socket s;
                try { s = await _listen.AcceptAsync(_stop.Token); }
                catch (Exception) { return; }
                _ = Task.Run(() => ServeAsync(s));
            }
        }

        private static async Task ServeAsync(Socket s)
        {
            var buffer = new byte[2 * XsdCodec.MaxMessage];
            int start = 0, end = 0;
            try
            {
                while (true)
                {
                    while (end - start >= 16)
                    {
                        var len = 16 + (int)XsdCodec.ReadHeader(buffer.AsSpan(start)).Len;
                        if (end - start < len) break;
                        var sent = 0;
                        while (sent < len) sent += await s.SendAsync(buffer.AsMemory(start + sent, len - sent), SocketFlags.None);
                        start += len;
                    }
                    if (start == end) start = end = 0;
                    var n = await s.ReceiveAsync(buffer.AsMemory(end), SocketFlags.None);
                    if (n <= 0) return;
                    end += n;
                }
            }
            catch (Exception) { }
            finally { s.Dispose(); }
        }

        public async ValueTask DisposeAsync()
        {
            _stop.Cancel();
            _listen.Dispose();
            await _accept;
        }
    }
}
