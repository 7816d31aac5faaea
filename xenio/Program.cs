using System.CommandLine;

namespace XenIo.Cli;

/// <summary>The <c>xenio</c> command: daemons, supervisor and xl-style toolstack verbs.</summary>
internal static class Program
{
    private static int Main(string[] args)
    {
        var root = new RootCommand("xenio: Xen's split-driver I/O in user space (an xl-style toolstack)");
        foreach (var verb in AllVerbs()) root.Subcommands.Add(verb);
        return root.Parse(args).Invoke();
    }

    /// <summary>Every verb; each area builds its commands in its own file (xenio/Verbs/&lt;Area&gt;.cs).</summary>
    private static IEnumerable<Command> AllVerbs() =>
    [
        Verbs.XenstoredVerb.Build(),
        Verbs.HyperdVerb.Build(),
        .. Verbs.DomainVerbs.Build(),
        .. Verbs.DeviceVerbs.Build(),
        .. Verbs.HostVerbs.Build(),
        Verbs.NetbackVerb.Build(),
        Verbs.ConsoledVerb.Build(),
        Verbs.ConsoleVerb.Build(),
        Verbs.BlkbackVerb.Build(),
        Verbs.SwitchVerb.Build(),
        Verbs.CaptureVerb.Build(),
        Verbs.UpVerbs.BuildUp(),
        Verbs.UpVerbs.BuildDown(),
    ];
}
