using System.Buffers;

namespace XenIo.Consoled.Telnet;

/// <summary>
/// The server side of one telnet connection (RFC 854, 855, 856, 858, 1073, 1143), as a pure state
/// machine over spans: <see cref="Receive"/> turns the client's bytes into data for the guest plus
/// replies; <see cref="Encode"/> turns guest output into bytes for the client. It does no I/O.
/// <list type="bullet">
/// <item>The server opens the negotiation (<see cref="Start"/>): BSD telnet with an explicit port
/// sends nothing until the server does.</item>
/// <item>Options follow RFC 1143's Q method: a request for a state we are already in is never
/// answered, so two parties cannot loop; unsupported options are refused (WILL→DONT, DO→WONT).</item>
/// <item>IAC (0xFF) in guest output is always doubled: an unescaped one from a hostile guest would be
/// a command to the viewer's client.</item>
/// <item>Outside binary mode CR LF and CR NUL both mean end of line: the guest gets CR and the byte
/// after it is consumed; a bare CR in guest output is sent as CR NUL.</item>
/// </list>
/// </summary>
public sealed class TelnetProtocol
{
    /// <summary>The longest sub-negotiation kept; the rest of a longer one is ignored.</summary>
    public const int MaxSubnegotiation = 64;

    private static ReadOnlySpan<byte> AreYouThereAnswer => "\r\n[xenio: yes]\r\n"u8;

    private enum Q : byte
    {
        No,
        Yes,
        WantNo,
        WantYes,
    }

    private struct OptionState
    {
        public Q State;
        public bool Opposite;
    }

    private enum Decode : byte
    {
        Data,
        Cr,
        Iac,
        Will,
        Wont,
        Do,
        Dont,
        SbOption,
        SbData,
        SbIac,
    }

    private readonly OptionState[] _us = new OptionState[256];
    private readonly OptionState[] _him = new OptionState[256];
    private readonly byte[] _sb = new byte[MaxSubnegotiation];
    private Decode _state;
    private byte _sbOption;
    private int _sbLength;
    private bool _outputCr;

    /// <summary>We send binary (our side of TRANSMIT-BINARY is on): guest output is not NVT-translated.</summary>
    public bool SendsBinary => _us[TelnetOption.Binary].State == Q.Yes;

    /// <summary>The client sends binary: its CRs are data like any other byte.</summary>
    public bool ReceivesBinary => _him[TelnetOption.Binary].State == Q.Yes;

    public bool Echoes => _us[TelnetOption.Echo].State == Q.Yes;

    public bool IsLocalEnabled(byte option) => _us[option].State == Q.Yes;

    public bool IsRemoteEnabled(byte option) => _him[option].State == Q.Yes;

    public int WindowWidth { get; private set; }

    public int WindowHeight { get; private set; }

    /// <summary>The most bytes <see cref="Encode"/> can produce from <paramref name="length"/> bytes.</summary>
    public static int MaxEncodedLength(int length) => 2 * length + 1;

    private static bool SupportsLocal(byte option) =>
        option is TelnetOption.Binary or TelnetOption.Echo or TelnetOption.SuppressGoAhead;

    private static bool SupportsRemote(byte option) =>
        option is TelnetOption.Binary or TelnetOption.SuppressGoAhead or TelnetOption.WindowSize;

    /// <summary>Opens the negotiation: WILL ECHO, WILL SGA, DO SGA, WILL BINARY, DO BINARY, DO NAWS.</summary>
    public void Start(IBufferWriter<byte> replies)
    {
        RequestLocal(TelnetOption.Echo, true, replies);
        RequestLocal(TelnetOption.SuppressGoAhead, true, replies);
        RequestRemote(TelnetOption.SuppressGoAhead, true, replies);
        RequestLocal(TelnetOption.Binary, true, replies);
        RequestRemote(TelnetOption.Binary, true, replies);
        RequestRemote(TelnetOption.WindowSize, true, replies);
    }

    /// <summary>Asks to enable or disable our side of an option (RFC 1143 "we want us to…").</summary>
    public void RequestLocal(byte option, bool enable, IBufferWriter<byte> replies) =>
        Request(ref _us[option], option, enable, TelnetCommand.Will, TelnetCommand.Wont, replies);

    /// <summary>Asks the client to enable or disable its side of an option (RFC 1143 "we want him to…").</summary>
    public void RequestRemote(byte option, bool enable, IBufferWriter<byte> replies) =>
        Request(ref _him[option], option, enable, TelnetCommand.Do, TelnetCommand.Dont, replies);

    private static void Request(ref OptionState s, byte option, bool enable, byte yes, byte no, IBufferWriter<byte> replies)
    {
        if (enable)
        {
            switch (s.State)
            {
                case Q.No:
                    s.State = Q.WantYes;
                    Send(replies, yes, option);
                    break;
                case Q.WantNo:
                    s.Opposite = true;
                    break;
                case Q.WantYes:
                    s.Opposite = false;
                    break;
            }
        }
        else
        {
            switch (s.State)
            {
                case Q.Yes:
                    s.State = Q.WantNo;
                    Send(replies, no, option);
                    break;
                case Q.WantNo:
                    s.Opposite = false;
                    break;
                case Q.WantYes:
                    s.Opposite = true;
                    break;
            }
        }
    }

    /// <summary>
    /// Consumes client bytes. Data for the guest goes to <paramref name="data"/> (never longer than
    /// <paramref name="input"/>), negotiation answers to <paramref name="replies"/>.
    /// </summary>
    public int Receive(ReadOnlySpan<byte> input, Span<byte> data, IBufferWriter<byte> replies, ITelnetEvents? events)
    {
        int o = 0;
        foreach (byte b in input)
        {
            switch (_state)
            {
                case Decode.Data:
                    if (b == TelnetCommand.Iac) _state = Decode.Iac;
                    else
                    {
                        data[o++] = b;
                        if (b == (byte)'\r' && !ReceivesBinary) _state = Decode.Cr;
                    }
                    break;
                case Decode.Cr:
                    // RFC 854: CR is followed by LF or NUL, both meaning "end of line" here.
                    if (b == TelnetCommand.Iac) _state = Decode.Iac;
                    else if (b is (byte)'\n' or 0) _state = Decode.Data;
                    else
                    {
                        data[o++] = b;
                        _state = b == (byte)'\r' ? Decode.Cr : Decode.Data;
                    }
                    break;
                case Decode.Iac:
                    o = Command(b, data, o, replies, events);
                    break;
                case Decode.Will:
                    ReceivedWill(b, replies);
                    _state = Decode.Data;
                    break;
                case Decode.Wont:
                    ReceivedWont(b, replies);
                    _state = Decode.Data;
                    break;
                case Decode.Do:
                    ReceivedDo(b, replies);
                    _state = Decode.Data;
                    break;
                case Decode.Dont:
                    ReceivedDont(b, replies);
                    _state = Decode.Data;
                    break;
                case Decode.SbOption:
                    _sbOption = b;
                    _sbLength = 0;
                    _state = Decode.SbData;
                    break;
                case Decode.SbData:
                    if (b == TelnetCommand.Iac) _state = Decode.SbIac;
                    else AppendSubnegotiation(b);
                    break;
                case Decode.SbIac:
                    if (b == TelnetCommand.Iac)
                    {
                        AppendSubnegotiation(b);
                        _state = Decode.SbData;
                    }
                    else if (b == TelnetCommand.Se)
                    {
                        _state = Decode.Data;
                        Subnegotiation(events);
                    }
                    else
                    {
                        // Not SE: the client never ended it (RFC 855 leaves this open); drop the
                        // sub-negotiation and take the byte as the command it is.
                        o = Command(b, data, o, replies, events);
                    }
                    break;
            }
        }
        return o;
    }

    private void AppendSubnegotiation(byte b)
    {
        if (_sbLength < _sb.Length) _sb[_sbLength++] = b;
    }

    private void Subnegotiation(ITelnetEvents? events)
    {
        // NAWS is only honoured once the client has agreed to it.
        if (_sbOption == TelnetOption.WindowSize && _sbLength == 4 && _him[TelnetOption.WindowSize].State == Q.Yes)
        {
            WindowWidth = (_sb[0] << 8) | _sb[1];
            WindowHeight = (_sb[2] << 8) | _sb[3];
            events?.OnWindowSize(WindowWidth, WindowHeight);
        }
    }

    private int Command(byte b, Span<byte> data, int o, IBufferWriter<byte> replies, ITelnetEvents? events)
    {
        _state = Decode.Data;
        switch (b)
        {
            case TelnetCommand.Iac:
                data[o] = b;
                return o + 1;
            case TelnetCommand.Will: _state = Decode.Will; break;
            case TelnetCommand.Wont: _state = Decode.Wont; break;
            case TelnetCommand.Do: _state = Decode.Do; break;
            case TelnetCommand.Dont: _state = Decode.Dont; break;
            case TelnetCommand.Sb: _state = Decode.SbOption; break;
            case TelnetCommand.Break:
                events?.OnBreak(o);
                break;
            case TelnetCommand.AreYouThere:
                replies.Write(AreYouThereAnswer);
                break;
            case TelnetCommand.InterruptProcess:
                // What a terminal sends for "interrupt": ^C to the guest's tty.
                data[o] = 0x03;
                return o + 1;
            default:
                // NOP, DM, AO, EC, EL, GA and a stray SE: nothing to do.
                break;
        }
        return o;
    }

    private void ReceivedWill(byte option, IBufferWriter<byte> replies) =>
        ReceivedPositive(ref _him[option], option, SupportsRemote(option), TelnetCommand.Do, TelnetCommand.Dont, replies);

    private void ReceivedDo(byte option, IBufferWriter<byte> replies) =>
        ReceivedPositive(ref _us[option], option, SupportsLocal(option), TelnetCommand.Will, TelnetCommand.Wont, replies);

    private void ReceivedWont(byte option, IBufferWriter<byte> replies) =>
        ReceivedNegative(ref _him[option], option, TelnetCommand.Do, TelnetCommand.Dont, replies);

    private void ReceivedDont(byte option, IBufferWriter<byte> replies) =>
        ReceivedNegative(ref _us[option], option, TelnetCommand.Will, TelnetCommand.Wont, replies);

    /// <summary>RFC 1143 on receipt of WILL (him) or DO (us).</summary>
    private static void ReceivedPositive(ref OptionState s, byte option, bool supported, byte yes, byte no, IBufferWriter<byte> replies)
    {
        switch (s.State)
        {
            case Q.No:
                if (supported)
                {
                    s.State = Q.Yes;
                    Send(replies, yes, option);
                }
                else
                {
                    Send(replies, no, option);
                }
                break;
            case Q.Yes:
                break;
            case Q.WantNo:
                // EMPTY: "DONT answered by WILL", a broken peer; the option is off. OPPOSITE: on, as queued.
                s.State = s.Opposite ? Q.Yes : Q.No;
                s.Opposite = false;
                break;
            case Q.WantYes:
                if (s.Opposite)
                {
                    s.State = Q.WantNo;
                    s.Opposite = false;
                    Send(replies, no, option);
                }
                else
                {
                    s.State = Q.Yes;
                }
                break;
        }
    }

    /// <summary>RFC 1143 on receipt of WONT (him) or DONT (us).</summary>
    private static void ReceivedNegative(ref OptionState s, byte option, byte yes, byte no, IBufferWriter<byte> replies)
    {
        switch (s.State)
        {
            case Q.No:
                break;
            case Q.Yes:
                s.State = Q.No;
                Send(replies, no, option);
                break;
            case Q.WantNo:
                if (s.Opposite)
                {
                    s.State = Q.WantYes;
                    s.Opposite = false;
                    Send(replies, yes, option);
                }
                else
                {
                    s.State = Q.No;
                }
                break;
            case Q.WantYes:
                s.State = Q.No;
                s.Opposite = false;
                break;
        }
    }

    private static void Send(IBufferWriter<byte> replies, byte command, byte option)
    {
        var span = replies.GetSpan(3);
        span[0] = TelnetCommand.Iac;
        span[1] = command;
        span[2] = option;
        replies.Advance(3);
    }

    /// <summary>
    /// Encodes guest output for the client into <paramref name="destination"/> (at least
    /// <see cref="MaxEncodedLength"/> long): IAC doubled always; outside binary mode a CR not
    /// followed by LF gets a NUL after it.
    /// </summary>
    public int Encode(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        bool binary = SendsBinary;
        int o = 0;
        foreach (byte b in source)
        {
            if (_outputCr && b != (byte)'\n') destination[o++] = 0;
            _outputCr = false;
            if (b == TelnetCommand.Iac)
            {
                destination[o++] = TelnetCommand.Iac;
                destination[o++] = TelnetCommand.Iac;
                continue;
            }
            destination[o++] = b;
            if (b == (byte)'\r' && !binary) _outputCr = true;
        }
        return o;
    }
}
