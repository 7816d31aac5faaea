using System.Buffers;
using XenIo.Consoled.Telnet;
using Xunit;

namespace XenIo.Consoled.Tests;

public sealed class TelnetTests
{
    private const byte Iac = 255, Will = 251, Wont = 252, Do = 253, Dont = 254, Sb = 250, Se = 240;

    private sealed class Events : ITelnetEvents
    {
        public List<int> Breaks { get; } = [];
        public List<(int W, int H)> Sizes { get; } = [];
        public void OnBreak(int dataIndex) => Breaks.Add(dataIndex);
        public void OnWindowSize(int width, int height) => Sizes.Add((width, height));
    }

    private sealed class Server
    {
        public TelnetProtocol Protocol { get; } = new();
        public Events Events { get; } = new();
        public ArrayBufferWriter<byte> Replies { get; } = new();

        public byte[] Started()
        {
            Protocol.Start(Replies);
            return TakeReplies();
        }

        public byte[] TakeReplies()
        {
            var r = Replies.WrittenSpan.ToArray();
            Replies.ResetWrittenCount();
            return r;
        }

        /// <summary>Feeds bytes one at a time (the hardest split) and returns the data.</summary>
        public byte[] FeedBytewise(params byte[] input)
        {
            var data = new List<byte>();
            var one = new byte[1];
            foreach (var b in input)
            {
                int n = Protocol.Receive([b], one, Replies, Events);
                data.AddRange(one[..n]);
            }
            return data.ToArray();
        }

        public byte[] Feed(params byte[] input)
        {
            var data = new byte[input.Length];
            int n = Protocol.Receive(input, data, Replies, Events);
            return data[..n];
        }
    }

    [Fact]
    public void The_server_opens_the_negotiation()
    {
        var s = new Server();
        Assert.Equal(new byte[]
        {
            Iac, Will, 1, Iac, Will, 3, Iac, Do, 3, Iac, Will, 0, Iac, Do, 0, Iac, Do, 31,
        }, s.Started());
    }

    [Fact]
    public void Answers_to_our_own_requests_are_not_acknowledged_again()
    {
        var s = new Server();
        s.Started();
        Assert.Empty(s.FeedBytewise(Iac, Do, 1, Iac, Do, 3, Iac, Will, 3, Iac, Do, 0, Iac, Will, 0, Iac, Will, 31));
        Assert.Empty(s.TakeReplies());
        Assert.True(s.Protocol.Echoes);
        Assert.True(s.Protocol.SendsBinary);
        Assert.True(s.Protocol.ReceivesBinary);
        // A repeat of a state we are already in gets no answer at all (RFC 1143: no loops).
        s.FeedBytewise(Iac, Do, 1, Iac, Will, 0);
        Assert.Empty(s.TakeReplies());
    }

    [Theory]
    [InlineData(Will, 24, Dont)]  // TTYPE
    [InlineData(Will, 34, Dont)]  // LINEMODE
    [InlineData(Do, 24, Wont)]
    [InlineData(Do, 6, Wont)]     // TIMING-MARK
    [InlineData(Will, 1, Dont)]   // the client echoing: refused, we echo
    public void Unsupported_options_are_refused(byte verb, byte option, byte answer)
    {
        var s = new Server();
        s.Started();
        s.FeedBytewise(Iac, verb, option);
        Assert.Equal(new byte[] { Iac, answer, option }, s.TakeReplies());
        Assert.False(s.Protocol.IsRemoteEnabled(option) && verb == Will);
    }

    [Fact]
    public void Refusals_of_our_requests_end_quietly()
    {
        var s = new Server();
        s.Started();
        s.Feed(Iac, Dont, 1, Iac, Wont, 0, Iac, Dont, 0, Iac, Wont, 31);
        Assert.Empty(s.TakeReplies());
        Assert.False(s.Protocol.Echoes);
        Assert.False(s.Protocol.SendsBinary);
        // A WONT for something already off is ignored.
        s.Feed(Iac, Wont, 31, Iac, Dont, 1);
        Assert.Empty(s.TakeReplies());
    }

    [Fact]
    public void Disabling_an_enabled_option_is_acknowledged_once()
    {
        var s = new Server();
        s.Started();
        s.Feed(Iac, Do, 1);
        s.Feed(Iac, Dont, 1);
        Assert.Equal(new byte[] { Iac, Wont, 1 }, s.TakeReplies());
        s.Feed(Iac, Dont, 1);
        Assert.Empty(s.TakeReplies());
        // Asked again later: accepted again.
        s.Feed(Iac, Do, 1);
        Assert.Equal(new byte[] { Iac, Will, 1 }, s.TakeReplies());
    }

    [Fact]
    public void Queued_opposite_request_follows_rfc_1143()
    {
        var s = new Server();
        s.Started(); // WANTYES for ECHO
        s.Protocol.RequestLocal(1, false, s.Replies); // WANTYES OPPOSITE: nothing sent yet
        Assert.Empty(s.TakeReplies());
        s.Feed(Iac, Do, 1); // the answer arrives: now ask to disable
        Assert.Equal(new byte[] { Iac, Wont, 1 }, s.TakeReplies());
        s.Feed(Iac, Dont, 1);
        Assert.Empty(s.TakeReplies());
        Assert.False(s.Protocol.Echoes);
    }

    [Fact]
    public void Two_state_machines_converge_without_looping()
    {
        var server = new Server();
        var client = new Server();
        var toClient = server.Started();
        var toServer = client.Started();
        for (int round = 0; round < 10 && (toClient.Length > 0 || toServer.Length > 0); round++)
        {
            client.Feed(toClient);
            server.Feed(toServer);
            toClient = server.TakeReplies();
            toServer = client.TakeReplies();
        }
        Assert.Empty(toClient);
        Assert.Empty(toServer);
        Assert.True(server.Protocol.SendsBinary);
        Assert.True(server.Protocol.ReceivesBinary);
    }

    [Theory]
    [InlineData(new byte[] { (byte)'a', 13, 10, (byte)'b' }, new byte[] { (byte)'a', 13, (byte)'b' })]
    [InlineData(new byte[] { 13, 0 }, new byte[] { 13 })]
    [InlineData(new byte[] { 13, (byte)'x' }, new byte[] { 13, (byte)'x' })]
    [InlineData(new byte[] { 13, 13, 10 }, new byte[] { 13, 13 })]
    [InlineData(new byte[] { 13, 255, 255, 10 }, new byte[] { 13, 255, 10 })]
    [InlineData(new byte[] { 255, 255 }, new byte[] { 255 })]
    [InlineData(new byte[] { 255, 244 }, new byte[] { 3 })]          // IP becomes ^C
    [InlineData(new byte[] { (byte)'a', 255, 241, (byte)'b' }, new byte[] { (byte)'a', (byte)'b' })] // NOP
    public void Nvt_input_is_decoded(byte[] input, byte[] expected)
    {
        Assert.Equal(expected, new Server().FeedBytewise(input));
        Assert.Equal(expected, new Server().Feed(input));
    }

    [Fact]
    public void Binary_input_keeps_cr_lf_and_nul()
    {
        var s = new Server();
        s.Started();
        s.Feed(Iac, Will, 0);
        Assert.Equal(new byte[] { 13, 10, 13, 0, 255 }, s.FeedBytewise(13, 10, 13, 0, 255, 255));
    }

    [Fact]
    public void Window_size_is_parsed_with_doubled_iac_inside()
    {
        var s = new Server();
        s.Started();
        s.Feed(Iac, Will, 31);
        var data = s.FeedBytewise(Iac, Sb, 31, 0, 80, 0, 24, Iac, Se, (byte)'x', Iac, Sb, 31, 1, Iac, Iac, 0, 50, Iac, Se);
        Assert.Equal("x"u8.ToArray(), data);
        Assert.Equal([(80, 24), (511, 50)], s.Events.Sizes);
        Assert.Equal(511, s.Protocol.WindowWidth);
    }

    [Fact]
    public void Window_size_without_agreement_or_of_wrong_length_is_ignored()
    {
        var s = new Server();
        s.Feed(Iac, Sb, 31, 0, 80, 0, 24, Iac, Se);
        s.Started();
        s.Feed(Iac, Will, 31);
        s.Feed(Iac, Sb, 31, 0, 80, 0, Iac, Se);
        var overlong = new List<byte> { Iac, Sb, 31 };
        overlong.AddRange(new byte[10_000]);
        overlong.AddRange([Iac, Se, (byte)'k']);
        Assert.Equal("k"u8.ToArray(), s.Feed(overlong.ToArray()));
        Assert.Empty(s.Events.Sizes);
    }

    [Fact]
    public void An_unterminated_subnegotiation_gives_way_to_the_next_command()
    {
        var s = new Server();
        s.Started();
        s.Feed(Iac, Sb, 24, 1, 2, Iac, Do, 1);
        Assert.True(s.Protocol.Echoes);
    }

    [Fact]
    public void Break_reports_where_the_following_data_starts()
    {
        var s = new Server();
        Assert.Equal("ab"u8.ToArray(), s.Feed((byte)'a', Iac, 243, (byte)'b'));
        Assert.Equal([1], s.Events.Breaks);
    }

    [Fact]
    public void Are_you_there_is_answered()
    {
        var s = new Server();
        s.Feed(Iac, 246);
        Assert.Equal("\r\n[xenio: yes]\r\n"u8.ToArray(), s.TakeReplies());
    }

    [Fact]
    public void Iac_in_guest_output_is_always_doubled()
    {
        var s = new Server();
        var dst = new byte[TelnetProtocol.MaxEncodedLength(4)];
        int n = s.Protocol.Encode([1, 255, 255, 2], dst);
        Assert.Equal(new byte[] { 1, 255, 255, 255, 255, 2 }, dst[..n]);
        s.Started();
        s.Feed(Iac, Do, 0);
        n = s.Protocol.Encode([255], dst);
        Assert.Equal(new byte[] { 255, 255 }, dst[..n]);
    }

    [Fact]
    public void A_bare_cr_in_nvt_output_is_followed_by_nul_even_across_chunks()
    {
        var s = new Server();
        var dst = new byte[16];
        int n = s.Protocol.Encode("a\r\nb\r"u8, dst);
        Assert.Equal("a\r\nb\r"u8.ToArray(), dst[..n]);
        n = s.Protocol.Encode("c\r\r\n"u8, dst);
        Assert.Equal("\0c\r\0\r\n"u8.ToArray(), dst[..n]);
        // Binary: untouched.
        s.Started();
        s.Feed(Iac, Do, 0);
        n = s.Protocol.Encode("x\ry"u8, dst);
        Assert.Equal("x\ry"u8.ToArray(), dst[..n]);
    }

    [Fact]
    public void Encoded_output_decodes_back_to_the_guest_bytes()
    {
        var random = new Random(7);
        for (int i = 0; i < 1000; i++)
        {
            var bytes = new byte[random.Next(0, 300)];
            random.NextBytes(bytes);
            var server = new TelnetProtocol();
            var dst = new byte[TelnetProtocol.MaxEncodedLength(bytes.Length)];
            int n = server.Encode(bytes, dst);
            Assert.True(n <= dst.Length);
            // The client side in binary mode: IAC IAC is one 0xFF.
            var client = new Server();
            client.Feed(Iac, Will, 0);
            var back = client.Feed(dst[..n]);
            var expected = new List<byte>();
            for (int k = 0; k < bytes.Length; k++)
            {
                expected.Add(bytes[k]);
                if (bytes[k] == 13 && k + 1 < bytes.Length && bytes[k + 1] != 10) expected.Add(0);
            }
            Assert.Equal(expected.ToArray(), back);
        }
    }

    /// <summary>10,000 random streams biased towards telnet's own bytes: nothing throws, nothing amplifies.</summary>
    [Fact]
    public void Fuzz_random_streams()
    {
        var random = new Random(20261123);
        byte[] interesting = [255, 255, 255, 251, 252, 253, 254, 250, 240, 243, 244, 246, 241, 13, 10, 0, 31, 0, 1, 3, 24];
        var data = new byte[2048];
        var replies = new ArrayBufferWriter<byte>();
        var events = new Events();
        for (int i = 0; i < 10_000; i++)
        {
            var protocol = new TelnetProtocol();
            if (random.Next(2) == 0) protocol.Start(replies);
            replies.ResetWrittenCount();
            int length = random.Next(0, 2048);
            var input = new byte[length];
            for (int k = 0; k < length; k++)
                input[k] = random.Next(3) == 0 ? (byte)random.Next(256) : interesting[random.Next(interesting.Length)];
            int at = 0;
            int total = 0;
            while (at < length)
            {
                int piece = Math.Min(length - at, random.Next(1, 64));
                total += protocol.Receive(input.AsSpan(at, piece), data.AsSpan(total), replies, events);
                at += piece;
            }
            Assert.True(total <= length);
            // Each reply answers one command of at least 2 input bytes (3 for options, 2 for AYT's 16).
            Assert.True(replies.WrittenCount <= 8 * length + 3, $"stream {i}: {replies.WrittenCount} reply bytes for {length}");
            var output = new byte[TelnetProtocol.MaxEncodedLength(length)];
            Assert.True(protocol.Encode(input, output) <= output.Length);
        }
    }
}
