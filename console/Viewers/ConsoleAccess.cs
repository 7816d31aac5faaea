using XenIo.Consoled.Access;

namespace XenIo.Consoled.Viewers;

/// <summary>Who may attach: administrators found by socket owner on loopback, everyone else by token.</summary>
public sealed class ConsoleAccess
{
    public ConsoleAccess(ConsoleTokens tokens, AdministratorCheck administrators, bool requireTokens, TimeSpan authTimeout)
    {
        Tokens = tokens;
        Administrators = administrators;
        RequireTokens = requireTokens;
        AuthTimeout = authTimeout;
    }

    public ConsoleTokens Tokens { get; }

    public AdministratorCheck Administrators { get; }

    /// <summary>True when bound to a non-loopback address: then everybody gives a token.</summary>
    public bool RequireTokens { get; }

    public TimeSpan AuthTimeout { get; }
}
