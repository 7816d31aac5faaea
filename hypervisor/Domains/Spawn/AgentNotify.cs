using System.Globalization;
using System.Text;

namespace XenIo.Hypervisor.Domains.Spawn;

/// <summary>What an agent tells hyperd on its notify pipe, one ASCII line each.</summary>
public enum AgentMessageKind
{
    /// <summary><c>hello pid=N</c>: the agent is running; N is its pid in hyperd's pid namespace.</summary>
    Hello,

    /// <summary><c>ready init=N</c>: namespaces set up and init started (N is init's pid inside the guest).</summary>
    Ready,

    /// <summary><c>shutdown REASON exit=N|signal=N</c>: the domain shuts down; init's exit is given.</summary>
    Shutdown,
}

/// <summary>Xen's shutdown reasons (public/sched.h SHUTDOWN_*).</summary>
public enum ShutdownReason
{
    Poweroff = 0,
    Reboot = 1,
    Suspend = 2,
    Crash = 3,
    Watchdog = 4,
}

public readonly record struct AgentMessage(AgentMessageKind Kind, int Value, ShutdownReason Reason = ShutdownReason.Poweroff, bool Signaled = false)
{
    /// <summary>
    /// Parses one line. The agent is the guest's kernel and hostile once init runs: anything malformed,
    /// overlong or out of range is rejected, never thrown.
    /// </summary>
    public static bool TryParse(ReadOnlySpan<byte> line, out AgentMessage message)
    {
        message = default;
        if (line.Length is 0 or > MaxLineLength) return false;
        Span<char> chars = stackalloc char[line.Length];
        for (var i = 0; i < line.Length; i++)
        {
            if (line[i] is < 0x20 or > 0x7e) return false;
            chars[i] = (char)line[i];
        }
        ReadOnlySpan<char> text = chars;
        var space = text.IndexOf(' ');
        if (space <= 0) return false;
        var verb = text[..space];
        var rest = text[(space + 1)..];
        if (verb.SequenceEqual("hello") && TryValue(rest, "pid=", 1, out var pid))
        {
            message = new AgentMessage(AgentMessageKind.Hello, pid);
            return true;
        }
        if (verb.SequenceEqual("ready") && TryValue(rest, "init=", 1, out var init))
        {
            message = new AgentMessage(AgentMessageKind.Ready, init);
            return true;
        }
        if (verb.SequenceEqual("shutdown"))
        {
            var sp = rest.IndexOf(' ');
            if (sp <= 0 || !Enum.TryParse<ShutdownReason>(rest[..sp], ignoreCase: true, out var reason)
                || !Enum.IsDefined(reason) || char.IsDigit(rest[0])) return false;
            var status = rest[(sp + 1)..];
            if (TryValue(status, "exit=", 0, out var code) && code <= 255)
            {
                message = new AgentMessage(AgentMessageKind.Shutdown, code, reason);
                return true;
            }
            if (TryValue(status, "signal=", 1, out var sig) && sig <= 64)
            {
                message = new AgentMessage(AgentMessageKind.Shutdown, sig, reason, Signaled: true);
                return true;
            }
        }
        return false;
    }

    public const int MaxLineLength = 64;

    private static bool TryValue(ReadOnlySpan<char> text, string key, int min, out int value)
    {
        value = 0;
        return text.StartsWith(key, StringComparison.Ordinal)
            && text.Length - key.Length is > 0 and <= 10
            && int.TryParse(text[key.Length..], NumberStyles.None, CultureInfo.InvariantCulture, out value)
            && value >= min;
    }

    public string Format() => Kind switch
    {
        AgentMessageKind.Hello => $"hello pid={Value}\n",
        AgentMessageKind.Ready => $"ready init={Value}\n",
        _ => string.Create(CultureInfo.InvariantCulture,
            $"shutdown {Reason.ToString().ToLowerInvariant()} {(Signaled ? "signal" : "exit")}={Value}\n"),
    };

    public byte[] ToBytes() => Encoding.ASCII.GetBytes(Format());
}
