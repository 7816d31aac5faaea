using System.CommandLine;

namespace XenIo.Cli;

/// <summary>The <c>xenio</c> command: daemons, supervisor and xl-style toolstack verbs.</summary>
internal static class Program
{
    private static int Main(string[] args)
    {
        var root = new RootCommand("xenio: Xen's split-driver I/O in user space (an xl-style toolstack)");
        foreach (var command in Verbs.All()) root.Subcommands.Add(command);
        return root.Parse(args).Invoke();
    }
}

/// <summary>Every verb of the command; each area adds its verbs in its own file as a partial.</summary>
internal static partial class Verbs
{
    public static IEnumerable<Command> All()
    {
        var list = new List<Command>();
        AddVerbs(list);
        return list;
    }

    static partial void AddVerbs(List<Command> list);
}
