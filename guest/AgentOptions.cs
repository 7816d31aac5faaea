using System.Globalization;

namespace XenIo.Guest;

/// <summary>
/// The agent's command line: <c>xenio-guest (--config-fd N | --config FILE) [--notify-fd N] [--console-fd N]</c>.
/// hyperd passes <c>--config-fd 5 --notify-fd 6</c>; <c>--console-fd</c> bridges init's terminal to an
/// inherited stream socket (the debug console) and overrides the configuration's <c>console_fd</c>.
/// </summary>
internal sealed record AgentOptions
{
    public int? ConfigFd { get; init; }
    public string? ConfigFile { get; init; }
    public int? NotifyFd { get; init; }
    public int? ConsoleFd { get; init; }

    public const string Usage = "usage: xenio-guest (--config-fd N | --config FILE) [--notify-fd N] [--console-fd N]";

    public static AgentOptions Parse(IReadOnlyList<string> args)
    {
        var o = new AgentOptions();
        for (var i = 0; i < args.Count; i++)
        {
            string Value() => i + 1 < args.Count ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            int Fd()
            {
                var v = Value();
                return int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out var fd) && fd is >= 3 and < 1024
                    ? fd : throw new ArgumentException($"'{v}' is not a descriptor number (3..1023)");
            }
            o = args[i] switch
            {
                "--config-fd" => o with { ConfigFd = Fd() },
                "--config" => o with { ConfigFile = Value() },
                "--notify-fd" => o with { NotifyFd = Fd() },
                "--console-fd" => o with { ConsoleFd = Fd() },
                _ => throw new ArgumentException($"unknown option '{args[i]}'"),
            };
        }
        if ((o.ConfigFd is null) == (o.ConfigFile is null)) throw new ArgumentException("give one of --config-fd or --config");
        return o;
    }
}
