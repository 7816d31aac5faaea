using System.Text;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;
using Xunit;

namespace XenIo.Hypervisor.Tests.Store;

public class XenstoredTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    /// <summary>A backend writing into a device directory the toolstack has just removed must not bring it back.</summary>
    [Fact]
    public async Task WriteUnder_writes_only_while_the_directory_exists()
    {
        await using var h = new StoreHarness();
        var c = await h.Dom0Async();
        const string device = "/local/domain/0/backend/vbd/1/51712";
        await c.WriteAsync($"{device}/state", "1");
        Assert.True(await c.WriteUnderAsync(device, "state", "2"));
        Assert.Equal("2", await c.ReadAsync($"{device}/state"));

        await c.RmAsync(device);
        Assert.False(await c.WriteUnderAsync(device, "state", "6"));
        Assert.Null(await c.TryReadAsync(device));
        Assert.Empty(await c.DirectoryAsync("/local/domain/0/backend/vbd/1"));
    }

    [Fact]
    public async Task ReadWriteDirectoryRmMkdir()
    {
        await using var h = new StoreHarness();
        var c = await h.Dom0Async();
        await c.WriteAsync("/a/b/c", "v1");
        Assert.Equal("v1", await c.ReadAsync("/a/b/c"));
        Assert.Equal("", await c.ReadAsync("/a/b"));      // implicit parents are empty
        Assert.Equal(["b"], await c.DirectoryAsync("/a"));
        await c.WriteAsync("/a/d", "x");
        Assert.Equal(["b", "d"], await c.DirectoryAsync("/a"));  // creation order
        await c.MkdirAsync("/a/e");
        await c.MkdirAsync("/a/e");                      // existing: fine
        Assert.Equal(["b", "d", "e"], await c.DirectoryAsync("/a"));
        await c.RmAsync("/a/b");
        Assert.Equal(XsError.ENOENT, await StoreHarness.ErrorOf(() => c.ReadAsync("/a/b/c")));
        await c.RmAsync("/a/b");                         // gone, parent exists: OK
        Assert.Equal(XsError.ENOENT, await StoreHarness.ErrorOf(() => c.RmAsync("/nope/x")));
        Assert.Equal(XsError.EINVAL, await StoreHarness.ErrorOf(() => c.RmAsync("/")));
        Assert.Null(await c.TryReadAsync("/a/zz"));
        // Values are bytes: embedded NULs survive.
        await c.WriteAsync("/bin", new byte[] { 1, 0, 2 });
        Assert.Equal(new byte[] { 1, 0, 2 }, await c.ReadBytesAsync("/bin"));
    }

    [Theory]
    [InlineData("/a//b")]
    [InlineData("/a/")]
    [InlineData("/a b")]
    [InlineData("/a.b")]
    [InlineData("@foo")]
    [InlineData("")]
    public async Task InvalidPathsAreEinval(string path)
    {
        await using var h = new StoreHarness();
        var c = await h.Dom0Async();
        Assert.Equal(XsError.EINVAL, await StoreHarness.ErrorOf(() => c.WriteAsync(path, "x")));
    }

    [Fact]
    public async Task PathLengthLimits()
    {
        await using var h = new StoreHarness();
        var c = await h.Dom0Async();
        var ok = "/" + new string('a', XenstoreLimits.AbsPathMax - 1);
        Assert.Equal(XsError.None, await StoreHarness.ErrorOf(() => c.WriteAsync(ok, "x")));
        Assert.Equal(XsError.EINVAL, await StoreHarness.ErrorOf(() => c.WriteAsync(ok + "b", "x")));
        var g = await h.GuestAsync(c, 3);
        // Segments short enough that no node's child list passes the guest's node-size quota.
        var rel = string.Join('/', Enumerable.Range(0, 16).Select(i => new string((char)('a' + i), 127))); // 16 × 128 - 1
        rel += "z";
        Assert.Equal(XsError.None, await StoreHarness.ErrorOf(() => g.WriteAsync(rel, "x")));
        Assert.Equal(XsError.EINVAL, await StoreHarness.ErrorOf(() => g.WriteAsync(rel + "r", "x")));
    }

    [Fact]
    public async Task PermissionsAndRelativePaths()
    {
        await using var h = new StoreHarness();
        var c = await h.Dom0Async();
        var g5 = await h.GuestAsync(c, 5);
        var g6 = await h.GuestAsync(c, 6);
        Assert.Equal("/local/domain/5", await c.GetDomainPathAsync(5));
        Assert.Equal([new XenstorePermission(5, XenstoreAccess.None)], await c.GetPermsAsync("/local/domain/5"));

        // Relative paths land in the guest's own directory, which it owns.
        await g5.WriteAsync("data/x", "1");
        Assert.Equal("1", await c.ReadAsync("/local/domain/5/data/x"));
        Assert.Equal([new XenstorePermission(5, XenstoreAccess.None)], await c.GetPermsAsync("/local/domain/5/data/x"));

        // Another guest can neither read nor write it, nor learn whether a node exists.
        Assert.Equal(XsError.EACCES, await StoreHarness.ErrorOf(() => g6.ReadAsync("/local/domain/5/data/x")));
        Assert.Equal(XsError.EACCES, await StoreHarness.ErrorOf(() => g6.ReadAsync("/local/domain/5/nothing")));
        Assert.Equal(XsError.EACCES, await StoreHarness.ErrorOf(() => g6.WriteAsync("/local/domain/5/data/x", "2")));
        Assert.Equal(XsError.EACCES, await StoreHarness.ErrorOf(() => g6.WriteAsync("/local/domain/5/new", "2")));
        Assert.Equal(XsError.EACCES, await StoreHarness.ErrorOf(() => g6.RmAsync("/local/domain/5/data")));
        Assert.Equal(XsError.EACCES, await StoreHarness.ErrorOf(() => g6.DirectoryAsync("/local/domain/5")));
        // /xenio is dom0's.
        await c.WriteAsync("/xenio/switch/br0/mtu", "1500");
        Assert.Equal(XsError.EACCES, await StoreHarness.ErrorOf(() => g5.ReadAsync("/xenio/switch/br0/mtu")));
        Assert.Equal(XsError.EACCES, await StoreHarness.ErrorOf(() => g5.WriteAsync("/xenio/switch/br0/mtu", "9000")));
        Assert.Equal(XsError.EACCES, await StoreHarness.ErrorOf(() => g5.WriteAsync("/xenio/x", "1")));
        Assert.Equal(XsError.EACCES, await StoreHarness.ErrorOf(() => g5.DirectoryAsync("/xenio")));
        Assert.Equal("1500", await c.ReadAsync("/xenio/switch/br0/mtu"));
        // Privileged operations are refused to guests.
        Assert.Equal(XsError.EACCES, await StoreHarness.ErrorOf(() => g5.IntroduceAsync(9, 1, 1)));
        Assert.Equal(XsError.EACCES, await StoreHarness.ErrorOf(() => g5.ControlAsync("quota")));

        // Granting: dom0 gives dom6 read on a node of dom5's; write stays refused.
        await c.SetPermsAsync("/local/domain/5/data/x", [new(5, XenstoreAccess.None), new(6, XenstoreAccess.Read)]);
        Assert.Equal("1", await g6.ReadAsync("/local/domain/5/data/x"));
        Assert.Equal(XsError.EACCES, await StoreHarness.ErrorOf(() => g6.WriteAsync("/local/domain/5/data/x", "2")));
        // The owner entry is the default for everybody else.
        await c.WriteAsync("/pub", "p");
        await c.SetPermsAsync("/pub", [new(0, XenstoreAccess.Read)]);
        Assert.Equal("p", await g6.ReadAsync("/pub"));
        Assert.Equal(XsError.EACCES, await StoreHarness.ErrorOf(() => g6.WriteAsync("/pub", "q")));
        // A guest may not give its node away, but may change the rest of its permissions.
        Assert.Equal(XsError.EPERM, await StoreHarness.ErrorOf(() => g5.SetPermsAsync("data/x", [new(6, XenstoreAccess.None)])));
        await g5.SetPermsAsync("data/x", [new(5, XenstoreAccess.Read)]);
        Assert.Equal(XsError.EINVAL, await StoreHarness.ErrorOf(() => c.SetPermsAsync("/pub", [])));
    }

    [Fact]
    public async Task GuestCreatedChildInheritsPermsButGuestOwnsIt()
    {
        await using var h = new StoreHarness();
        var c = await h.Dom0Async();
        var g = await h.GuestAsync(c, 7);
        await c.MkdirAsync("/shared");
        await c.SetPermsAsync("/shared", [new(0, XenstoreAccess.None), new(7, XenstoreAccess.Both)]);
        await g.WriteAsync("/shared/a/b", "v");
        Assert.Equal([new XenstorePermission(7, XenstoreAccess.None), new(7, XenstoreAccess.Both)], await c.GetPermsAsync("/shared/a/b"));
        await c.WriteAsync("/shared/c", "v");
        Assert.Equal([new XenstorePermission(0, XenstoreAccess.None), new(7, XenstoreAccess.Both)], await c.GetPermsAsync("/shared/c"));
    }

    [Fact]
    public async Task ConcurrentTransactionsOneCommitsOtherGetsEagain()
    {
        await using var h = new StoreHarness();
        var a = await h.Dom0Async();
        var b = await h.Dom0Async();
        await a.WriteAsync("/counter", "0");
        var ta = await a.TransactionStartAsync();
        var tb = await b.TransactionStartAsync();
        Assert.Equal("0", await a.ReadAsync("/counter", ta));
        Assert.Equal("0", await b.ReadAsync("/counter", tb));
        await a.WriteAsync("/counter", "1", ta);
        await b.WriteAsync("/counter", "2", tb);
        Assert.Equal("0", await a.ReadAsync("/counter"));  // not visible before commit
        Assert.Equal("1", await a.ReadAsync("/counter", ta));
        Assert.True(await a.TransactionEndAsync(ta, commit: true));
        Assert.False(await b.TransactionEndAsync(tb, commit: true));  // EAGAIN
        Assert.Equal("1", await a.ReadAsync("/counter"));
        // The transaction is gone after EAGAIN.
        Assert.Equal(XsError.ENOENT, await StoreHarness.ErrorOf(() => b.ReadAsync("/counter", tb)));
    }

    [Fact]
    public async Task ManyConcurrentIncrementsWithRetryAreAllCounted()
    {
        await using var h = new StoreHarness();
        var clients = new List<XenstoreClient>();
        for (var i = 0; i < 4; i++) clients.Add(await h.Dom0Async());
        await clients[0].WriteAsync("/n", "0");
        await Task.WhenAll(clients.Select(c => Task.Run(async () =>
        {
            for (var k = 0; k < 25; k++)
                await c.TransactAsync(async tx =>
                {
                    var v = int.Parse(await c.ReadAsync("/n", tx));
                    await c.WriteAsync("/n", (v + 1).ToString(), tx);
                });
        })));
        Assert.Equal("100", await clients[0].ReadAsync("/n"));
    }

    [Fact]
    public async Task TransactionRmMkdirAndAbort()
    {
        await using var h = new StoreHarness();
        var c = await h.Dom0Async();
        await c.WriteAsync("/t/a/b", "1");
        var tx = await c.TransactionStartAsync();
        await c.RmAsync("/t/a", tx);
        await c.WriteAsync("/t/n/m", "2", tx);
        Assert.Equal(["n"], await c.DirectoryAsync("/t", tx));
        Assert.Equal(["a"], await c.DirectoryAsync("/t"));
        Assert.True(await c.TransactionEndAsync(tx, commit: false));
        Assert.Equal("1", await c.ReadAsync("/t/a/b"));
        tx = await c.TransactionStartAsync();
        await c.RmAsync("/t/a", tx);
        await c.WriteAsync("/t/n/m", "2", tx);
        Assert.True(await c.TransactionEndAsync(tx, commit: true));
        Assert.Equal(["n"], await c.DirectoryAsync("/t"));
        Assert.Equal("2", await c.ReadAsync("/t/n/m"));
        Assert.Equal(XsError.ENOENT, await StoreHarness.ErrorOf(() => c.ReadAsync("/t/a/b")));
        Assert.Equal(XsError.ENOENT, await StoreHarness.ErrorOf(() => c.TransactionEndAsync(999, true)));
    }

    [Fact]
    public async Task WatchFiresOnSetChangeBelowAndParentRemoval()
    {
        await using var h = new StoreHarness();
        var c = await h.Dom0Async();
        var w = await h.Dom0Async();
        await using var sub = await w.SubscribeAsync("/w/x/y", "tok");
        Assert.Equal(new XenstoreWatchEvent("/w/x/y", "tok"), await sub.Events.ReadAsync().AsTask().WaitAsync(Wait)); // fires once when set
        await c.WriteAsync("/w/x/y/z", "1");     // below: fires
        Assert.Equal("/w/x/y/z", (await sub.Events.ReadAsync().AsTask().WaitAsync(Wait)).Path);
        await c.WriteAsync("/w/other", "1");     // elsewhere: silent
        await c.WriteAsync("/w/x/y", "2");       // at: fires
        Assert.Equal("/w/x/y", (await sub.Events.ReadAsync().AsTask().WaitAsync(Wait)).Path);
        await c.RmAsync("/w");                   // removing a parent fires the watch on the child (exact match, as Xen)
        Assert.Equal("/w/x/y", (await sub.Events.ReadAsync().AsTask().WaitAsync(Wait)).Path);
        // Unwatch: no more events; a duplicate watch is EEXIST.
        await using var again = await w.SubscribeAsync("/dup", "t2");
        Assert.Equal(XsError.EEXIST, await StoreHarness.ErrorOf(() => w.RequestAsync(XsdSockmsgType.Watch, Encoding.ASCII.GetBytes("/dup\0t2\0"))));
        Assert.Equal(XsError.ENOENT, await StoreHarness.ErrorOf(() => w.RequestAsync(XsdSockmsgType.Unwatch, Encoding.ASCII.GetBytes("/nowatch\0t\0"))));
    }

    [Fact]
    public async Task GuestWatchesAreRelativeAndLimitedToWhatItMayRead()
    {
        await using var h = new StoreHarness();
        var c = await h.Dom0Async();
        var g = await h.GuestAsync(c, 4);
        await using var own = await g.SubscribeAsync("device", "d");
        Assert.Equal(new XenstoreWatchEvent("device", "d"), await own.Events.ReadAsync().AsTask().WaitAsync(Wait));
        await using var foreign = await g.SubscribeAsync("/secret", "s");
        Assert.Equal("/secret", (await foreign.Events.ReadAsync().AsTask().WaitAsync(Wait)).Path); // the initial event always fires
        await c.WriteAsync("/secret/k", "v");          // dom0-only: the guest must not hear of it
        await c.WriteAsync("/local/domain/4/device/vif/0/state", "1");
        Assert.Equal("device/vif/0/state", (await own.Events.ReadAsync().AsTask().WaitAsync(Wait)).Path);
        Assert.False(foreign.Events.TryRead(out _));
    }

    [Fact]
    public async Task IntroduceAndReleaseFireSpecialWatches()
    {
        await using var h = new StoreHarness();
        var c = await h.Dom0Async();
        await using var intro = await c.SubscribeAsync(XenstorePath.IntroduceDomain, "i");
        await using var rel = await c.SubscribeAsync(XenstorePath.ReleaseDomain, "r");
        await intro.Events.ReadAsync().AsTask().WaitAsync(Wait);
        await rel.Events.ReadAsync().AsTask().WaitAsync(Wait);
        Assert.False(await c.IsDomainIntroducedAsync(8));
        await h.GuestAsync(c, 8);
        Assert.Equal("@introduceDomain", (await intro.Events.ReadAsync().AsTask().WaitAsync(Wait)).Path);
        Assert.True(await c.IsDomainIntroducedAsync(8));
        Assert.True(await c.IsDomainIntroducedAsync(0));
        await c.ReleaseAsync(8);
        Assert.Equal("@releaseDomain", (await rel.Events.ReadAsync().AsTask().WaitAsync(Wait)).Path);
        Assert.False(await c.IsDomainIntroducedAsync(8));
        Assert.Equal(XsError.ENOENT, await StoreHarness.ErrorOf(() => c.ReleaseAsync(8)));
        Assert.Equal(XsError.EINVAL, await StoreHarness.ErrorOf(() => c.IntroduceAsync(9, 1, 0)));    // port 0
        Assert.Equal(XsError.EINVAL, await StoreHarness.ErrorOf(() => c.IntroduceAsync(9, 77, 5)));   // nothing mapped there
    }

    [Fact]
    public async Task DirectoryPartPagesLargeDirectories()
    {
        await using var h = new StoreHarness();
        var c = await h.Dom0Async();
        var expected = new List<string>();
        for (var i = 0; i < 400; i++)
        {
            var name = "child-with-a-long-name-" + i.ToString("D4");
            expected.Add(name);
            await c.MkdirAsync("/big/" + name);
        }
        // 400 × 28 bytes do not fit one reply: XS_DIRECTORY is E2BIG, the client pages with DIRECTORY_PART.
        Assert.Equal(XsError.E2BIG, await StoreHarness.ErrorOf(() => c.RequestAsync(XsdSockmsgType.Directory, Encoding.ASCII.GetBytes("/big\0"))));
        Assert.Equal(expected, await c.DirectoryAsync("/big"));
        var part = await c.RequestAsync(XsdSockmsgType.DirectoryPart, Encoding.ASCII.GetBytes("/big\0999999\0"));
        Assert.Equal(0, part[^1]);
        Assert.Equal(0, part[^2]);   // offset past the end: generation then an empty list
    }

    [Fact]
    public async Task QuotasAnsweredWithXensErrors()
    {
        var quota = new XenstoreQuota { Nodes = 30 };
        await using var h = new StoreHarness(quota);
        var c = await h.Dom0Async();
        var g = await h.GuestAsync(c, 2);

        // nodes: ENOSPC (the domain already owns /local/domain/2)
        var created = 1;
        XsError e;
        while ((e = await StoreHarness.ErrorOf(() => g.WriteAsync("n" + created, "x"))) == XsError.None) created++;
        Assert.Equal(XsError.ENOSPC, e);
        Assert.Equal(quota.Nodes, created);
        await g.RmAsync("n1");
        // node size: ENOSPC for a value beyond node-size (header and permissions count)
        var max = quota.NodeSize - XenstoreNode.HeaderBytes - XenstoreNode.PermissionBytes;
        Assert.Equal(XsError.None, await StoreHarness.ErrorOf(() => g.WriteAsync("n2", new byte[max])));
        Assert.Equal(XsError.ENOSPC, await StoreHarness.ErrorOf(() => g.WriteAsync("n2", new byte[max + 1])));
        // dom0 is not limited
        Assert.Equal(XsError.None, await StoreHarness.ErrorOf(() => c.WriteAsync("/local/domain/2/big", new byte[4000])));
        // watches: E2BIG
        for (var i = 0; i < quota.Watches; i++) await g.SubscribeAsync("w" + i);
        Assert.Equal(XsError.E2BIG, await StoreHarness.ErrorOf(() => g.SubscribeAsync("w-too-many")));
        // transactions: ENOSPC
        for (var i = 0; i < quota.Transactions; i++) await g.TransactionStartAsync();
        Assert.Equal(XsError.ENOSPC, await StoreHarness.ErrorOf(() => g.TransactionStartAsync()));
        // permissions per node: ENOSPC
        var perms = Enumerable.Range(0, quota.NodePermissions + 1).Select(i => new XenstorePermission((ushort)(i == 0 ? 2 : i + 10), XenstoreAccess.Read)).ToArray();
        Assert.Equal(XsError.ENOSPC, await StoreHarness.ErrorOf(() => g.SetPermsAsync("n2", perms)));
        // payload beyond 4096: the client refuses to build it; the daemon kills such a connection (fuzz tests).
        var quotaText = await c.ControlAsync("quota");
        Assert.Contains("nodes            :       30", quotaText);
        Assert.Contains("watches          :      128", quotaText);
    }

    [Fact]
    public void QuotaDefaultsAreXens()
    {
        var q = new XenstoreQuota();
        Assert.Equal((1000, 2048, 128, 10, 20, 5, 1024), (q.Nodes, q.NodeSize, q.Watches, q.Transactions, q.Outstanding, q.NodePermissions, q.TransactionNodes));
    }

    [Fact]
    public async Task TransactionNodesQuota()
    {
        await using var h = new StoreHarness(new XenstoreQuota { TransactionNodes = 8 });
        var c = await h.Dom0Async();
        var g = await h.GuestAsync(c, 3);
        var tx = await g.TransactionStartAsync();
        var e = XsError.None;
        for (var i = 0; i < 20 && e == XsError.None; i++) e = await StoreHarness.ErrorOf(() => g.TryReadAsync("k" + i, tx));
        Assert.Equal(XsError.ENOSPC, e);
        // A transaction a quota broke half-way can never commit.
        Assert.Equal(XsError.ENOSPC, await StoreHarness.ErrorOf(() => g.TransactionEndAsync(tx, commit: true)));
    }

    [Fact]
    public async Task ControlPrintAndUnknown()
    {
        await using var h = new StoreHarness();
        var c = await h.Dom0Async();
        Assert.Equal("OK", await c.ControlAsync("print", "hello"));
        Assert.Equal(XsError.EINVAL, await StoreHarness.ErrorOf(() => c.ControlAsync("frobnicate")));
        Assert.Equal(XsError.ENOSYS, await StoreHarness.ErrorOf(() => c.RequestAsync((XsdSockmsgType)99, "x\0"u8.ToArray())));
        Assert.Equal(XsError.ENOSYS, await StoreHarness.ErrorOf(() => c.RequestAsync(XsdSockmsgType.WatchEvent, "x\0"u8.ToArray())));
        await c.ResetWatchesAsync();
    }
}
