using System.Buffers.Binary;
using System.CommandLine;
using System.Globalization;
using System.Net;
using System.Text;
using XenIo.VSwitch.Management;

namespace XenIo.Cli.Verbs;

/// <summary>
/// <c>xenio capture BR [-i PORT] [-f FILTER] [-s SNAPLEN] [-w FILE|-] [--pcapng] [-c COUNT]</c>: a live
/// capture streamed from netback, written as it arrives, so <c>xenio capture xenbr0 -f icmp -w - | tshark -r -</c> works.
/// </summary>
internal static class CaptureVerb
{
    public static Command Build()
    {
        var runDir = Instance.RunDirOption();
        var br = new Argument<string>("BR") { Description = "bridge to capture on" };
        var port = new Option<string>("-i", "--interface") { Description = "capture one port only" };
        var filter = new Option<string>("-f", "--filter") { Description = "tcpdump filter expression" };
        var snaplen = new Option<int?>("-s", "--snaplen") { Description = "bytes kept per frame" };
        var write = new Option<string>("-w", "--write") { Description = "output file, - for stdout (default -)" };
        var pcapng = new Option<bool>("--pcapng") { Description = "pcapng (one interface per port, direction flags) instead of pcap" };
        var count = new Option<long?>("-c", "--count") { Description = "stop after this many frames" };
        var c = new Command("capture", "capture frames crossing a bridge (pcap or pcapng)") { runDir, br, port, filter, snaplen, write, pcapng, count };
        c.SetAction((parse, ct) => Instance.Run(async () =>
        {
            var bridge = parse.GetValue(br)!;
            if (!SwitchConfigMapping.IsValidName(bridge)) throw new CliException($"bridge name '{bridge}' is invalid");
            var limit = parse.GetValue(count);
            if (limit is <= 0) throw new CliException($"-c {limit} is invalid; valid: a positive count");
            var query = new StringBuilder($"capture?bridge={Uri.EscapeDataString(bridge)}");
            if (parse.GetValue(port) is { Length: > 0 } p) query.Append("&port=").Append(Uri.EscapeDataString(p));
            if (parse.GetValue(filter) is { Length: > 0 } f) query.Append("&filter=").Append(Uri.EscapeDataString(f));
            if (parse.GetValue(snaplen) is { } s) query.Append("&snaplen=").Append(s.ToString(CultureInfo.InvariantCulture));
            var ng = parse.GetValue(pcapng);
            query.Append(ng ? "&format=pcapng" : "&format=pcap");

            // The file first: a path that cannot be written is the user's to fix, before netback starts a capture.
            var target = parse.GetValue(write) is { Length: > 0 } w && w != "-" ? w : null;
            await using var output = target is null ? Console.OpenStandardOutput() : OpenOutput(target);
            using var http = Instance.Netback(Instance.RunDirectory(parse, runDir), out var socket);
            HttpResponseMessage reply;
            try
            {
                reply = await http.GetAsync(query.ToString(), HttpCompletionOption.ResponseHeadersRead, ct).ConfigureAwait(false);
            }
            catch (HttpRequestException e)
            {
                throw Instance.NetbackDown(socket, e.InnerException ?? e);
            }
            using (reply)
            {
                if (reply.StatusCode != HttpStatusCode.OK)
                {
                    var body = await reply.Content.ReadAsStringAsync(ct).ConfigureAwait(false);
                    using var doc = System.Text.Json.JsonDocument.Parse(body);
                    throw new CliException(doc.RootElement.TryGetProperty("error", out var e) ? e.GetString() ?? body : body);
                }
                await using var input = await reply.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
                var counter = new CaptureRecordCounter(ng);
                var buffer = new byte[64 * 1024];
                int n;
                try
                {
                    while ((n = await input.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0)
                    {
                        // Counted with or without -c: the closing line says how many were captured.
                        var keep = counter.Feed(buffer.AsSpan(0, n), limit ?? long.MaxValue);
                        try
                        {
                            await output.WriteAsync(buffer.AsMemory(0, keep), ct).ConfigureAwait(false);
                            await output.FlushAsync(ct).ConfigureAwait(false);
                        }
                        catch (IOException e) when (target is not null)
                        {
                            // A file that fails partway (a full disk, a FIFO whose reader left) ends the capture as
                            // one that cannot be opened does; the file keeps what was written before.
                            throw new CliException($"cannot write {target}: {e.Message.Replace($" : '{target}'", "", StringComparison.Ordinal)}");
                        }
                        if (keep < n || (limit is { } l2 && counter.Finished(l2))) break;
                    }
                }
                catch (HttpIOException e)
                {
                    throw new CliException($"netback ended the capture: {e.Message}");
                }
                catch (IOException) when (target is null)
                {
                    // The reader of our stdout went away (tshark -c, head): the capture is over.
                }
                await Console.Error.WriteLineAsync($"{counter.Records} packets captured").ConfigureAwait(false);
            }
            return 0;
        }));
        return c;
    }

    private static FileStream OpenOutput(string path)
    {
        try
        {
            // Unbuffered (every read is written and flushed at once anyway): after a failed write, closing the
            // file has nothing left to write, so the error is reported once, not again from Dispose.
            return new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read, bufferSize: 0);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new CliException($"cannot write {path}: {e.Message}; give -w a writable file, or - for stdout");
        }
    }
}

/// <summary>
/// Follows a pcap or pcapng byte stream and counts frame records (pcap records; pcapng enhanced packet
/// blocks), so a capture can stop exactly after N frames, at a record boundary.
/// </summary>
internal sealed class CaptureRecordCounter(bool pcapng)
{
    private readonly byte[] _head = new byte[24];
    private int _headFill;
    private bool _fileHeaderDone;
    private long _skip; // bytes of the current record's body still to pass

    public long Records { get; private set; }

    /// <summary>
    /// True once the <paramref name="limit"/>-th record has been passed whole: its header is counted as
    /// soon as it is read, but its body may still be in the next read.
    /// </summary>
    public bool Finished(long limit) => Records >= limit && _skip == 0;

    /// <summary>Consumes <paramref name="data"/>; returns how many of its bytes belong to the stream up to the <paramref name="limit"/>-th record.</summary>
    public int Feed(ReadOnlySpan<byte> data, long limit)
    {
        var pos = 0;
        while (pos < data.Length)
        {
            if (_skip > 0)
            {
                var take = (int)Math.Min(_skip, data.Length - pos);
                pos += take;
                _skip -= take;
                if (_skip == 0 && Records >= limit) return pos;
                continue;
            }
            if (Records >= limit) return pos;
            // Gather the fixed header: pcap file header (24), pcap record header (16), pcapng block start (8).
            var need = !pcapng ? (_fileHeaderDone ? 16 : 24) : 8;
            var take2 = Math.Min(need - _headFill, data.Length - pos);
            data.Slice(pos, take2).CopyTo(_head.AsSpan(_headFill));
            _headFill += take2;
            pos += take2;
            if (_headFill < need) return pos;
            _headFill = 0;
            if (!pcapng)
            {
                if (!_fileHeaderDone)
                {
                    _fileHeaderDone = true;
                    continue;
                }
                _skip = BinaryPrimitives.ReadUInt32LittleEndian(_head.AsSpan(8));
                Records++;
                if (_skip == 0 && Records >= limit) return pos;
            }
            else
            {
                var type = BinaryPrimitives.ReadUInt32LittleEndian(_head);
                var length = BinaryPrimitives.ReadUInt32LittleEndian(_head.AsSpan(4));
                if (length < 12) throw new CliException("netback sent a malformed pcapng block");
                _skip = length - 8;
                if (type == 6) Records++;
            }
        }
        return pos;
    }
}
