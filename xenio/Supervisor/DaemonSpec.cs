namespace XenIo.Cli.Supervisor;

/// <summary>One daemon the supervisor runs: its <c>xenio</c> verb and arguments, and the sockets that say it is ready.</summary>
public sealed record DaemonSpec(string Name, IReadOnlyList<string> Arguments, IReadOnlyList<string> ReadySockets);

/// <summary>How to re-execute this very <c>xenio</c>: the apphost itself, or <c>dotnet xenio.dll</c> when run that way (tests).</summary>
public sealed record SelfCommand(string FileName, IReadOnlyList<string> PrefixArguments)
{
    public static SelfCommand Current()
    {
        var process = Environment.ProcessPath ?? throw new InvalidOperationException("cannot find this process's executable");
        return Path.GetFileNameWithoutExtension(process) == "dotnet"
            ? new SelfCommand(process, [typeof(SelfCommand).Assembly.Location])
            : new SelfCommand(process, []);
    }
}
