namespace XenIo.Bench;

internal static class Program
{
    private static int Main(string[] args)
    {
        Console.Error.WriteLine("bench runner: see make bench");
        return 2;
    }
}
