namespace XenIo.Consoled.Telnet;

/// <summary>Telnet commands (RFC 854).</summary>
public static class TelnetCommand
{
    public const byte Se = 240;
    public const byte Nop = 241;
    public const byte DataMark = 242;
    public const byte Break = 243;
    public const byte InterruptProcess = 244;
    public const byte AbortOutput = 245;
    public const byte AreYouThere = 246;
    public const byte EraseCharacter = 247;
    public const byte EraseLine = 248;
    public const byte GoAhead = 249;
    public const byte Sb = 250;
    public const byte Will = 251;
    public const byte Wont = 252;
    public const byte Do = 253;
    public const byte Dont = 254;
    public const byte Iac = 255;
}

/// <summary>The telnet options this server takes part in; every other one is refused.</summary>
public static class TelnetOption
{
    /// <summary>RFC 856.</summary>
    public const byte Binary = 0;
    /// <summary>RFC 857: the server echoes (the guest's tty does).</summary>
    public const byte Echo = 1;
    /// <summary>RFC 858: suppress go-ahead, i.e. character at a time.</summary>
    public const byte SuppressGoAhead = 3;
    /// <summary>RFC 1073: negotiate about window size.</summary>
    public const byte WindowSize = 31;
}

/// <summary>What the telnet state machine reports besides data and replies.</summary>
public interface ITelnetEvents
{
    /// <summary>
    /// IAC BRK: a serial break; the console turns the next key into a SysRq request.
    /// <paramref name="dataIndex"/> is where the data after the break starts in this call's output.
    /// </summary>
    void OnBreak(int dataIndex);

    /// <summary>NAWS sub-negotiation: the viewer's terminal size.</summary>
    void OnWindowSize(int width, int height);
}
