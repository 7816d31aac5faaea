using System.Net.Sockets;
using System.Text;
using XenIo.Hypervisor.Domains.Cgroups;
using XenIo.Hypervisor.Domains.Spawn;
using XenIo.Tests;

namespace XenIo.Guest.Tests;

/// <summary>Starts real agents (the JIT build next to the tests) with a debug console the test reads.</summary>
internal static class GuestHarness
{
    /// <summary>Each test run gets its own instance so parallel runs and leftovers never collide.</summary>
    public static KernelNames Names(string test) => new($"t{Environment.ProcessId % 100000}{test}");

    public static AgentSpawner Spawner(KernelNames names) => new(CgroupLayout.Detect(), names);

    /// <summary>The JIT build of the agent copied next to the tests (its apphost), found as hyperd finds it.</summary>
    public static IReadOnlyList<string> AgentCommand => AgentSpawner.DefaultAgentCommand();

    /// <summary>A connected pair of stream sockets: the test keeps one end, the agent inherits the other.</summary>
    public static (Socket Ours, Socket Theirs) ConsolePair()
    {
        var path = Path.Combine(Path.GetTempPath(), $"xenio-test-console-{Guid.NewGuid():N}.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        var ours = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        ours.Connect(new UnixDomainSocketEndPoint(path));
        var theirs = listener.Accept();
        File.Delete(path);
        return (ours, theirs);
    }

    /// <summary>Starts a guest whose init is <c>/bin/sh -c script</c> and returns it with the test's console end.</summary>
    public static async Task<(GuestAgent Agent, Socket Console)> StartAsync(AgentSpawner spawner, string name, IReadOnlyList<string> init,
        IReadOnlyList<string>? hidden = null, CgroupLimits? limits = null, bool userns = false, int stopTimeoutMs = 2000)
    {
        var (ours, theirs) = ConsolePair();
        using var log = new FileStream(LogPath(name), FileMode.Create, FileAccess.Write);
        try
        {
            var agent = await spawner.StartAsync(new AgentSpawnRequest
            {
                Config = new AgentConfig { Name = name, Init = init, HiddenPaths = hidden ?? [], StopTimeoutMs = stopTimeoutMs },
                AgentCommand = AgentCommand,
                Console = theirs.SafeHandle,
                Log = log.SafeFileHandle,
                Limits = limits ?? CgroupLimits.None,
                Userns = userns,
                UsernsHostId = 100_000 + Environment.ProcessId % 1000,
            });
            return (agent, ours);
        }
        catch (Exception e)
        {
            ours.Dispose();
            throw new InvalidOperationException($"{e.Message}\nagent log:\n{ReadLog(name)}", e);
        }
        finally
        {
            theirs.Dispose();
        }
    }

    /// <summary>Removes whatever an instance of a test left (after a failed assertion), so runs never accumulate.</summary>
    public static void RemoveInstance(KernelNames names)
    {
        foreach (var ns in NetnsNames.List(names.Prefix)) NetnsNames.Detach(ns);
        DomainCgroup.RemoveLeftovers(CgroupLayout.Detect(), names);
    }

    public static string LogPath(string name) => Path.Combine(Path.GetTempPath(), $"xenio-test-agent-{Environment.ProcessId}-{name}.log");

    public static string ReadLog(string name)
    {
        try { return File.ReadAllText(LogPath(name)); }
        catch (IOException) { return ""; }
    }

    /// <summary>Everything init wrote until the console closed, with the pty's CR LF made LF.</summary>
    public static async Task<string> ReadToEndAsync(Socket console, TimeSpan limit)
    {
        using var cts = new CancellationTokenSource(limit);
        var sb = new StringBuilder();
        var buffer = new byte[4096];
        int n;
        while ((n = await console.ReceiveAsync(buffer, SocketFlags.None, cts.Token)) > 0)
            sb.Append(Encoding.UTF8.GetString(buffer, 0, n));
        return sb.ToString().Replace("\r\n", "\n", StringComparison.Ordinal);
    }

    /// <summary>Reads until <paramref name="marker"/> has appeared; returns what was read.</summary>
    public static async Task<string> ReadUntilAsync(Socket console, string marker, TimeSpan limit)
    {
        using var cts = new CancellationTokenSource(limit);
        var sb = new StringBuilder();
        var buffer = new byte[4096];
        while (!sb.ToString().Replace("\r\n", "\n", StringComparison.Ordinal).Contains(marker, StringComparison.Ordinal))
        {
            var n = await console.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
            if (n == 0) break;
            sb.Append(Encoding.UTF8.GetString(buffer, 0, n));
        }
        return sb.ToString().Replace("\r\n", "\n", StringComparison.Ordinal);
    }
}
