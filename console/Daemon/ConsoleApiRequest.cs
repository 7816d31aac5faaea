namespace XenIo.Consoled.Daemon;

public enum ConsoleApiVerb
{
    List,
    Token,
    Attach,
}

/// <summary>
/// One request on consoled's API socket (<c>&lt;run&gt;/consoled.sock</c>): a single ASCII line.
/// <list type="bullet">
/// <item><c>list</c>: one line per console, <c>domid name telnet-port raw-port|-</c>, then the server closes.</item>
/// <item><c>token DOMAIN</c>: <c>ok TOKEN</c> for administrators (root, the <c>xenio</c> group).</item>
/// <item><c>attach DOMAIN [force] [token HEX]</c>: <c>ok NAME</c>, then the connection is the console,
/// raw bytes both ways (consoled's Ctrl-E c commands still apply); administrators need no token.</item>
/// </list>
/// Failures answer <c>error MESSAGE</c> and close. DOMAIN is a name or a domain id.
/// </summary>
public sealed record ConsoleApiRequest(ConsoleApiVerb Verb, string? Domain, bool Force, string? Token)
{
    public const int MaxLineBytes = 512;

    public static bool TryParse(string line, out ConsoleApiRequest request, out string error)
    {
        request = null!;
        error = "";
        var words = line.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (words.Length == 0)
        {
            error = "empty request";
            return false;
        }
        switch (words[0])
        {
            case "list" when words.Length == 1:
                request = new ConsoleApiRequest(ConsoleApiVerb.List, null, false, null);
                return true;
            case "token" when words.Length == 2:
                request = new ConsoleApiRequest(ConsoleApiVerb.Token, words[1], false, null);
                return true;
            case "attach" when words.Length >= 2:
                bool force = false;
                string? token = null;
                for (int i = 2; i < words.Length; i++)
                {
                    if (words[i] == "force" && !force) force = true;
                    else if (words[i] == "token" && token is null && i + 1 < words.Length) token = words[++i];
                    else
                    {
                        error = $"unexpected '{(words[i].Length > 40 ? words[i][..40] : words[i])}' (attach DOMAIN [force] [token HEX])";
                        return false;
                    }
                }
                request = new ConsoleApiRequest(ConsoleApiVerb.Attach, words[1], force, token);
                return true;
            default:
                error = "unknown request (list | token DOMAIN | attach DOMAIN [force] [token HEX])";
                return false;
        }
    }

    public override string ToString() => Verb switch
    {
        ConsoleApiVerb.List => "list",
        ConsoleApiVerb.Token => $"token {Domain}",
        _ => $"attach {Domain}{(Force ? " force" : "")}{(Token is null ? "" : " token " + Token)}",
    };
}
