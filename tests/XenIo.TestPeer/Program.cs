using System.Reflection;

namespace XenIo.TestPeer;

/// <summary>Marks a static <c>int Method(string[] args)</c> as a role the peer process can play.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class PeerRoleAttribute(string name) : Attribute
{
    public string Name { get; } = name;
}

/// <summary>
/// Entry point of the peer process. Roles live next to the tests that need them (one file per area)
/// and are found by their <see cref="PeerRoleAttribute"/>, so areas never edit a shared list.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length == 0)
        {
            Console.Error.WriteLine("usage: XenIo.TestPeer <role> [args…]");
            return 2;
        }
        var roles = typeof(Program).Assembly.GetTypes()
            .SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static))
            .Select(m => (Method: m, Role: m.GetCustomAttribute<PeerRoleAttribute>()))
            .Where(x => x.Role is not null)
            .ToDictionary(x => x.Role!.Name, x => x.Method);
        if (!roles.TryGetValue(args[0], out var method))
        {
            Console.Error.WriteLine($"unknown role '{args[0]}'; known: {string.Join(", ", roles.Keys.Order())}");
            return 2;
        }
        try
        {
            return (int)method.Invoke(null, [args[1..]])!;
        }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            Console.Error.WriteLine($"{args[0]}: {e.InnerException}");
            return 1;
        }
    }
}
