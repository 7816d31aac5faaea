namespace XenIo.Guest;

/// <summary>
/// The guest agent, <c>xenio-guest</c>: hyperd starts it as PID 1 of a domain's namespaces (see
/// <see cref="XenIo.Hypervisor.Domains.Spawn.AgentSpawner"/>); it is not meant to be run by hand.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
internal static class Program
{
    private static int Main(string[] args)
    {
        AgentOptions options;
        try { options = AgentOptions.Parse(args); }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"xenio-guest: {e.Message}\n{AgentOptions.Usage}\nThe agent is started by hyperd (xenio create), not by hand.");
            return 2;
        }
        // As PID 1 an unhandled exception must not reach the runtime's abort(): the kernel does not deliver
        // PID 1 its own SIGABRT, so abort() would never end. Exit at once; hyperd sees a crashed domain.
        AppDomain.CurrentDomain.UnhandledException += (_, e) =>
        {
            Console.Error.WriteLine($"xenio-guest: fatal: {e.ExceptionObject}");
            Interop.Libc.Exit(Agent.Crashed);
        };
        try { return new Agent(options).Run(); }
        catch (Exception e)
        {
            Console.Error.WriteLine($"xenio-guest: fatal: {e}");
            Interop.Libc.Exit(Agent.Crashed);
            return Agent.Crashed;
        }
    }
}
