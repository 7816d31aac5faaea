using XenIo.Tests;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace XenIo.Integration.Tests.VSwitch;

/// <summary>
/// Creates a socket inside a test namespace without moving the test process: a dedicated thread
/// enters the namespace (setns moves only the calling thread), creates and binds the socket, and goes
/// back. The socket keeps its namespace for life, so its traffic stays inside the test's namespaces.
/// </summary>
internal static partial class NetnsSocket
{
    private const int CLONE_NEWNET = 0x40000000;

    [LibraryImport("libc", EntryPoint = "setns", SetLastError = true)]
    private static partial int SetNs(int fd, int nstype);

    public static Socket Create(string netns, Func<Socket> create)
    {
        Socket? socket = null;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            using var home = File.OpenHandle("/proc/thread-self/ns/net");
            using var target = File.OpenHandle($"/var/run/netns/{netns}");
            try
            {
                if (SetNs((int)target.DangerousGetHandle(), CLONE_NEWNET) != 0) throw new IOException($"setns {netns}: errno {Marshal.GetLastPInvokeError()}");
                socket = create();
            }
            catch (Exception e)
            {
                failure = e;
            }
            finally
            {
                if (SetNs((int)home.DangerousGetHandle(), CLONE_NEWNET) != 0) Environment.FailFast("could not return a thread to its network namespace");
            }
        });
        thread.Start();
        thread.Join();
        if (failure is not null) throw failure;
        return socket!;
    }
}
