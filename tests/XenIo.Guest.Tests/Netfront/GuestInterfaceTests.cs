using System.Net;
using System.Runtime.InteropServices;
using XenIo.Guest.Netfront;
using XenIo.Net.Tap;
using XenIo.Tests;
using Xunit;

namespace XenIo.Guest.Tests.Netfront;

/// <summary>
/// The ioctls that set up <c>eth&lt;N&gt;</c> (MAC, MTU, up, IPv4 and IPv6 addresses, default routes),
/// run on a thread moved into a namespace the test creates, as the agent runs them in its guest's.
/// </summary>
public sealed partial class GuestInterfaceTests
{
    private const int CloneNewNet = 0x40000000;

    [LibraryImport("libc", EntryPoint = "setns", SetLastError = true)]
    private static partial int SetNs(int fd, int nstype);

    [SkippableFact]
    public void Mac_mtu_addresses_and_gateways_land_on_the_interface()
    {
        Requires.Root();
        Requires.Tool("ip");
        using var netns = new Netns($"nfgi{Environment.ProcessId % 100000}");
        Exception? failure = null;
        TapDevice? tap = null;
        // setns moves only the calling thread: a thread of its own that ends afterwards.
        var thread = new Thread(() =>
        {
            try
            {
                using var ns = File.OpenHandle($"/run/netns/{netns.Name}");
                if (SetNs((int)ns.DangerousGetHandle(), CloneNewNet) != 0) throw new IOException($"setns: {Marshal.GetLastPInvokeErrorMessage()}");
                tap = TapDevice.Create("eth3", offloads: false);
                GuestInterface.SetMac("eth3", [0x00, 0x16, 0x3e, 0x12, 0x34, 0x56]);
                GuestInterface.SetMtu("eth3", 9000);
                GuestInterface.Up("eth3");
                Assert.True(VifSettings.TryParseAddresses("198.18.71.2/24 2001:db8:71::2/64", out var addresses, out _));
                foreach (var a in addresses) GuestInterface.AddAddress("eth3", a);
                GuestInterface.AddDefaultRoute("eth3", IPAddress.Parse("198.18.71.254"));
                GuestInterface.AddDefaultRoute("eth3", IPAddress.Parse("198.18.71.254")); // again: already there is fine
                GuestInterface.AddDefaultRoute("eth3", IPAddress.Parse("2001:db8:71::fe"));
                Assert.True(GuestInterface.SetOffloads(tap.Fd, csum: true, tso4: true, tso6: true));
                Assert.True(GuestInterface.Index("eth3") > 0);
            }
            catch (Exception e)
            {
                failure = e;
            }
        });
        thread.Start();
        thread.Join();
        try
        {
            Assert.Null(failure);
            var link = netns.Exec("ip", "-o", "link", "show", "eth3");
            Assert.Contains("00:16:3e:12:34:56", link, StringComparison.Ordinal);
            Assert.Contains("mtu 9000", link, StringComparison.Ordinal);
            Assert.Contains("UP", link, StringComparison.Ordinal);
            var addr = netns.Exec("ip", "-o", "addr", "show", "eth3");
            Assert.Contains("198.18.71.2/24", addr, StringComparison.Ordinal);
            Assert.Contains("2001:db8:71::2/64", addr, StringComparison.Ordinal);
            Assert.Contains("default via 198.18.71.254 dev eth3", netns.Exec("ip", "route"), StringComparison.Ordinal);
            Assert.Contains("default via 2001:db8:71::fe dev eth3", netns.Exec("ip", "-6", "route"), StringComparison.Ordinal);
        }
        finally
        {
            tap?.Dispose();
        }
    }
}
