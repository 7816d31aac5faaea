using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;
using Xunit;

namespace XenIo.Hypervisor.Tests.Store;

public class PersistenceTests
{
    [Fact]
    public async Task XenioSubtreeSurvivesARestartAndTheRestDoesNot()
    {
        var root = Path.Combine(Path.GetTempPath(), "xenio-persist-" + Guid.NewGuid().ToString("N")[..12]);
        var options = Options.Create(new XenstoredOptions { RunDirectory = Path.Combine(root, "run"), StateDirectory = Path.Combine(root, "state") });
        try
        {
            var first = new XenstoredService(options, NullLoggerFactory.Instance);
            await first.StartAsync(default);
            await using (var c = await XenstoreClient.ConnectAsync(first.SocketPath))
            {
                await c.WriteAsync("/xenio/switch/br0/port/p1/kind", "tap");
                await c.WriteAsync("/xenio/switch/br0/bin", new byte[] { 0xff, 0, 1 });
                await c.SetPermsAsync("/xenio/switch/br0", [new(0, XenstoreAccess.None), new(3, XenstoreAccess.Read)]);
                await c.WriteAsync("/elsewhere", "gone after restart");
            }
            await first.StopAsync(default);
            var file = Path.Combine(root, "state", XenioPersistence.FileName);
            Assert.True(File.Exists(file));
            Assert.False(File.Exists(file + ".tmp"));

            var second = new XenstoredService(options, NullLoggerFactory.Instance);
            await second.StartAsync(default);
            await using (var c = await XenstoreClient.ConnectAsync(second.SocketPath))
            {
                Assert.Equal("tap", await c.ReadAsync("/xenio/switch/br0/port/p1/kind"));
                Assert.Equal(new byte[] { 0xff, 0, 1 }, await c.ReadBytesAsync("/xenio/switch/br0/bin"));
                Assert.Equal([new XenstorePermission(0, XenstoreAccess.None), new(3, XenstoreAccess.Read)], await c.GetPermsAsync("/xenio/switch/br0"));
                Assert.Null(await c.TryReadAsync("/elsewhere"));
                await c.RmAsync("/xenio/switch/br0/port");
            }
            await second.StopAsync(default);
            var third = new XenstoredService(options, NullLoggerFactory.Instance);
            await third.StartAsync(default);
            await using (var c = await XenstoreClient.ConnectAsync(third.SocketPath))
                Assert.Null(await c.TryReadAsync("/xenio/switch/br0/port/p1/kind"));
            await third.StopAsync(default);
        }
        finally
        {
            Directory.Delete(root, true);
        }
    }

    [Fact]
    public async Task ACorruptStateFileStartsEmpty()
    {
        var root = Path.Combine(Path.GetTempPath(), "xenio-persist-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(root);
        await File.WriteAllTextAsync(Path.Combine(root, XenioPersistence.FileName), "{ not json");
        try
        {
            await using var p = new XenioPersistence(root);
            Assert.Empty(p.Load());
        }
        finally
        {
            Directory.Delete(root, true);
        }
    }
}
