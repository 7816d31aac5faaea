using XenIo.Hypervisor.Domains.Spawn;

namespace XenIo.Guest.Init;

/// <summary>
/// Starts the domain's init program in a new session with the pty slave as its stdin, stdout, stderr and
/// controlling terminal (POSIX_SPAWN_SETSID, then the slave opened without O_NOCTTY: a session leader
/// without a terminal acquires the first one it opens), no other descriptors, default signals.
/// </summary>
internal static class InitProcess
{
    public static int Start(IReadOnlyList<string> argv, string hostname, IReadOnlyList<string> extraEnvironment, string ttyPath)
    {
        if (argv.Count == 0 || string.IsNullOrEmpty(argv[0])) throw new ArgumentException("init needs a program");
        var program = Resolve(argv[0]) ?? throw new FileNotFoundException($"init program '{argv[0]}' not found");
        var env = new List<string>
        {
            "TERM=linux",
            "PATH=" + SpawnCommand.DefaultPath,
            "HOME=/root",
            "HOSTNAME=" + hostname,
            "USER=root",
            "LOGNAME=root",
        };
        foreach (var e in extraEnvironment)
            if (e.Contains('=') && !e.Contains('\0')) env.Add(e);
        var spawn = new SpawnCommand(program, argv, env)
        {
            NewSession = true,
            WorkingDirectory = CanEnter("/root") ? "/root" : "/",
        };
        const int O_RDWR = 2;
        spawn.Open(0, ttyPath, O_RDWR).Open(1, ttyPath, O_RDWR).Open(2, ttyPath, O_RDWR);
        return spawn.Start();
    }

    /// <summary>Under isolation=userns guest root is an unprivileged host user and the host's /root is closed to it.</summary>
    private static bool CanEnter(string dir)
    {
        try
        {
            using var e = Directory.EnumerateFileSystemEntries(dir).GetEnumerator();
            e.MoveNext();
            return true;
        }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException) { return false; }
    }

    /// <summary>posix_spawn does not search PATH: a bare name is looked up as a shell would.</summary>
    internal static string? Resolve(string program)
    {
        if (program.Contains('/')) return File.Exists(program) ? program : null;
        foreach (var dir in SpawnCommand.DefaultPath.Split(':'))
        {
            var candidate = Path.Combine(dir, program);
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }
}
