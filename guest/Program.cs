namespace XenIo.Guest;

/// <summary>The guest agent: PID 1 of a domain's namespaces (built by the domains issue).</summary>
internal static class Program
{
    private static int Main(string[] args)
    {
        Console.Error.WriteLine("xenio-guest: the guest agent is started by hyperd (xenio create), not by hand");
        return 2;
    }
}
