using System.Diagnostics;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;
using XenIo.Hypervisor.Store.Transports;
using XenIo.Tests;
using Xunit;

namespace XenIo.Integration.Tests.Store;

/// <summary>Debian's xenstore-utils, unchanged, against our daemon (started in-process on a temp run dir).</summary>
public sealed class XenstoreUtilsTests : IAsyncLifetime
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "xenio-xsutils-" + Guid.NewGuid().ToString("N")[..12]);
    private readonly InProcessDomainMapper _mapper = new();
    private Xenstored _daemon = null!;
    private XenstoreSocketListener _listener = null!;
    private XenstoreClient _dom0 = null!;

    public async Task InitializeAsync()
    {
        _daemon = new Xenstored(mapper: _mapper);
        _listener = new XenstoreSocketListener(_daemon, XenstoreSocketListener.PathUnder(_dir));
        _dom0 = await XenstoreClient.ConnectAsync(_listener.SocketPath);
    }

    public async Task DisposeAsync()
    {
        await _dom0.DisposeAsync();
        await _listener.DisposeAsync();
        _daemon.Dispose();
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private ProcessStartInfo Start(string tool, params string[] args)
    {
        var psi = new ProcessStartInfo(Requires.Tool(tool))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["XENSTORED_PATH"] = _listener.SocketPath;
        return psi;
    }

    private async Task<(int Exit, string Out, string Err)> Run(string tool, params string[] args)
    {
        using var p = Process.Start(Start(tool, args))!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await p.WaitForExitAsync(cts.Token);
        return (p.ExitCode, await stdout, await stderr);
    }

    [SkippableFact]
    public async Task WriteThenRead()
    {
        var w = await Run("xenstore-write", "/t/a", "hello", "/t/b", "world");
        Assert.True(w.Exit == 0, w.Err);
        Assert.Equal("hello", await _dom0.ReadAsync("/t/a"));
        var r = await Run("xenstore-read", "/t/a", "/t/b");
        Assert.Equal((0, "hello\nworld\n"), (r.Exit, r.Out));
        var missing = await Run("xenstore-read", "/t/none");
        Assert.NotEqual(0, missing.Exit);
    }

    [SkippableFact]
    public async Task LsAndList()
    {
        Requires.Tool("xenstore-ls");
        await _dom0.WriteAsync("/t/a", "1");
        await _dom0.WriteAsync("/t/d/e", "two");
        var ls = await Run("xenstore-ls", "/t");
        Assert.True(ls.Exit == 0, ls.Err);
        Assert.Equal("a = \"1\"\nd = \"\"\n e = \"two\"\n", ls.Out);
        var full = await Run("xenstore-ls", "-f", "-p", "/t/d");
        Assert.Contains("/t/d/e = \"two\"", full.Out);
        Assert.Contains("(n0)", full.Out);
        var list = await Run("xenstore-list", "/t");
        Assert.Equal((0, "a\nd\n"), (list.Exit, list.Out));
    }

    [SkippableFact]
    public async Task ExistsAndRm()
    {
        await _dom0.WriteAsync("/t/x/y", "1");
        Assert.Equal(0, (await Run("xenstore-exists", "/t/x/y")).Exit);
        Assert.NotEqual(0, (await Run("xenstore-exists", "/t/nope")).Exit);
        var rm = await Run("xenstore-rm", "/t/x");
        Assert.True(rm.Exit == 0, rm.Err);
        Assert.Null(await _dom0.TryReadAsync("/t/x/y"));
        Assert.NotEqual(0, (await Run("xenstore-exists", "/t/x")).Exit);
    }

    [SkippableFact]
    public async Task ChmodThenGuestWriteIsRefused()
    {
        var page = new byte[4096];
        var (daemonEnd, guestEnd) = InMemoryDoorbell.CreatePair();
        _mapper.Offer(5, 0x2000, 15, new XenstoreDomainRing(page, daemonEnd));
        await _dom0.IntroduceAsync(5, 0x2000, 15);
        await using var guest = XenstoreClient.OverRing(page, guestEnd);
        await guest.WriteAsync("control/shutdown", "");          // its own node: allowed
        var chmod = await Run("xenstore-chmod", "/local/domain/5/control/shutdown", "n0", "r5");
        Assert.True(chmod.Exit == 0, chmod.Err);
        Assert.Equal([new XenstorePermission(0, XenstoreAccess.None), new(5, XenstoreAccess.Read)],
            await _dom0.GetPermsAsync("/local/domain/5/control/shutdown"));
        var e = await Assert.ThrowsAsync<XenstoreException>(() => guest.WriteAsync("control/shutdown", "poweroff"));
        Assert.Equal(XsError.EACCES, e.Error);
        Assert.Equal("", await guest.ReadAsync("control/shutdown"));   // read still granted
        guestEnd.Dispose();
    }

    [SkippableFact]
    public async Task AnotherUserIsRefusedEvenIfTheSocketModeIsOpened()
    {
        Requires.Root("runs a client as another user");
        Skip.IfNot(OperatingSystem.IsLinux(), "SO_PEERCRED is Linux's");
        var setpriv = Requires.Tool("setpriv");
        Requires.Tool("xenstore-read");
        await _dom0.WriteAsync("/secret", "s");
        // Loosen the modes as a careless admin might: SO_PEERCRED still keeps the stranger out.
        if (!OperatingSystem.IsLinux()) return;
        File.SetUnixFileMode(Path.GetDirectoryName(_listener.SocketPath)!, (UnixFileMode)0b111_101_101);
        File.SetUnixFileMode(_dir, (UnixFileMode)0b111_101_101);
        File.SetUnixFileMode(_listener.SocketPath, (UnixFileMode)0b110_110_110);
        var psi = Start("xenstore-read", "/secret");
        psi.FileName = setpriv;
        psi.ArgumentList.Clear();
        foreach (var a in new[] { "--reuid=65534", "--regid=65534", "--clear-groups", Requires.Tool("xenstore-read"), "/secret" })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync();
        Assert.NotEqual(0, p.ExitCode);
        Assert.DoesNotContain("s", stdout);
        Assert.Equal("s", await _dom0.ReadAsync("/secret"));
    }

    [SkippableFact]
    public async Task WatchSeesALaterWrite()
    {
        using var p = Process.Start(Start("xenstore-watch", "/t/w"))!;
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            // The watch fires once when set: its first line is the watched path.
            Assert.Equal("/t/w", await p.StandardOutput.ReadLineAsync(cts.Token));
            await _dom0.WriteAsync("/t/w/x", "1");
            Assert.Equal("/t/w/x", await p.StandardOutput.ReadLineAsync(cts.Token));
            await _dom0.WriteAsync("/t/other", "1");
            await _dom0.WriteAsync("/t/w", "2");
            Assert.Equal("/t/w", await p.StandardOutput.ReadLineAsync(cts.Token));
        }
        finally
        {
            p.Kill();
            await p.WaitForExitAsync();
        }
    }
}
