using System.CommandLine;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using XenIo.Cli.Config;
using XenIo.Cli.Verbs;
using XenIo.Hypervisor.Domains.Cgroups;
using XenIo.Hypervisor.Domains.Hyperd;
using XenIo.Hypervisor.Domains.Spawn;
using XenIo.Hypervisor.Store.Client;
using XenIo.Tests;
using Xunit;

namespace XenIo.Cli.Tests.Hyperd;

/// <summary>
/// The acceptance run through the verbs: 20 real guests created from xl.cfg files with
/// <c>xenio create</c>, shown by <c>xenio list</c> (table and <c>--json</c>), each shut down through
/// <c>control/shutdown</c> (<c>on_poweroff="preserve"</c> keeps it listed as shut down), then destroyed with
/// <c>xenio destroy</c>; no namespace, cgroup, process, memfd or xenstore node is left.
/// </summary>
[Collection("hyperd")]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class TwentyDomainsTests : IAsyncDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("xenio-twenty-").FullName;
    private readonly string _instance = $"t{Environment.ProcessId % 100000}tw";
    private HyperdService? _service;

    private string Run => Path.Combine(_dir, "run");

    /// <summary>Runs verbs in-process as <c>xenio …</c> would, returning the exit code and what they printed.</summary>
    private (int Code, string Output) Xenio(params string[] args)
    {
        var root = new RootCommand();
        foreach (var verb in DomainVerbs.Build()) root.Subcommands.Add(verb);
        var outWriter = new StringWriter();
        var errWriter = new StringWriter();
        var (oldOut, oldErr) = (Console.Out, Console.Error);
        Console.SetOut(outWriter);
        Console.SetError(errWriter);
        try { return (root.Parse([.. args, "--run-dir", Run]).Invoke(), outWriter + errWriter.ToString()); }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldErr);
        }
    }

    private static int MemfdCount() =>
        Directory.GetFiles("/proc/self/fd").Count(fd =>
        {
            try { return File.ResolveLinkTarget(fd, false)?.ToString().StartsWith("/memfd:xenio-d", StringComparison.Ordinal) == true; }
            catch (IOException) { return false; }
        });

    [SkippableFact]
    public async Task Twenty_domains_from_configs_listed_shut_down_destroyed_and_nothing_left()
    {
        Requires.Root();
        Requires.Tool("unshare");
        _service = new HyperdService(Options.Create(new HyperdOptions
        {
            RunDirectory = Run,
            StateDirectory = Path.Combine(_dir, "state"),
            Instance = _instance,
            PoolMiB = 20 * 32 + 16,
        }), NullLoggerFactory.Instance);
        await _service.StartAsync(CancellationToken.None);
        var memfdsBefore = MemfdCount();

        var names = Enumerable.Range(0, 20).Select(i => $"web{i:00}").ToArray();
        foreach (var (name, i) in names.Select((n, i) => (n, i)))
        {
            var cfg = Path.Combine(_dir, $"{name}.cfg");
            File.WriteAllText(cfg, $"""
                # an xl.cfg as a user writes it
                name = "{name}"
                memory = 32
                vcpus = 1
                vif = [ 'mac=00:16:3e:00:01:{i:x2},bridge=xenbr0,ip=198.18.1.{i + 1}/24' ]
                on_poweroff = "preserve"
                init = [ "/bin/sleep", "1000" ]
                """);
            var (code, output) = Xenio("create", cfg);
            Assert.True(code == 0, output);
            Assert.Contains($"Domain {name} created as", output);
        }

        var table = Xenio("list");
        Assert.Equal(0, table.Code);
        var rows = table.Output.TrimEnd('\n').Split('\n');
        Assert.Equal(21, rows.Length);
        Assert.Equal(["Name", "ID", "Mem", "VCPUs", "State", "Time(s)", "Console"], rows[0].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        for (int i = 0; i < 20; i++)
        {
            var cols = rows[i + 1].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal((names[i], "32", "1", "r-----", "-"), (cols[0], cols[2], cols[3], cols[4], cols[6]));
        }
        var json = Xenio("list", "--json");
        var listed = JsonSerializer.Deserialize(json.Output, HyperdJson.Default.ListDomainInfo)!;
        Assert.Equal(names, listed.Select(d => d.Name));
        Assert.All(listed, d => Assert.Equal((DomainState.Running, 32L, 32L), (d.State, d.MemoryMiB, d.MaxMemMiB)));
        Assert.All(listed, d => Assert.NotNull(d.AgentPid));
        var pids = listed.Select(d => d.AgentPid!.Value).ToArray();

        // Every agent is on its ring before it is asked to go (control/shutdown is read over it).
        await using var dom0 = await XenstoreClient.ConnectAsync(Path.Combine(Run, "xenstored", "socket"));
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(2);
        foreach (var d in listed)
            while (await dom0.TryReadAsync($"/local/domain/{d.Domid}/data/agent") != "running")
            {
                Assert.True(DateTime.UtcNow < deadline, $"{d.Name}'s agent never wrote data/agent");
                await Task.Delay(20);
            }

        foreach (var name in names)
        {
            var (code, output) = Xenio("shutdown", "-w", name);
            Assert.True(code == 0, output);
        }
        // on_poweroff=preserve keeps each one, renamed with xl's time suffix.
        var after = JsonSerializer.Deserialize(Xenio("list", "--json").Output, HyperdJson.Default.ListDomainInfo)!;
        Assert.All(after, d => Assert.Equal((DomainState.Shutdown, "poweroff"), (d.State, d.ShutdownReason)));
        Assert.Equal(listed.Select(d => d.Domid), after.Select(d => d.Domid));
        Assert.All(after.Zip(names), p => Assert.StartsWith(p.Second + "-", p.First.Name));
        Assert.Contains("---s--", Xenio("list").Output);
        foreach (var d in after) Assert.Equal(0, Xenio("destroy", d.Domid.ToString()).Code);
        Assert.Equal(["Name", "ID", "Mem", "VCPUs", "State", "Time(s)", "Console"], Xenio("list").Output.Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries));
        var gone = Xenio("destroy", "web00");
        Assert.Equal((1, true), (gone.Code, gone.Output.Contains("no domain 'web00'")));

        Assert.All(await dom0.DirectoryAsync("/local/domain"), d => Assert.Equal("0", d));
        Assert.Empty(await dom0.DirectoryAsync("/vm"));
        Assert.Empty(await dom0.DirectoryAsync("/libxl"));
        Assert.Empty(await dom0.DirectoryAsync("/local/domain/0/backend/vif"));
        var kernel = new KernelNames(_instance);
        Assert.Empty(NetnsNames.List(kernel.Prefix));
        Assert.Empty(DomainCgroup.FindLeftovers(CgroupLayout.Detect(), kernel));
        foreach (var pid in pids) Assert.False(Directory.Exists($"/proc/{pid}"), $"agent {pid} still exists");
        Assert.Equal(0, _service.Manager!.Host.Pool.UsedPages);
        Assert.Equal(memfdsBefore, MemfdCount());
    }

    public async ValueTask DisposeAsync()
    {
        if (_service is not null) await _service.DisposeAsync();
        var kernel = new KernelNames(_instance);
        foreach (var ns in NetnsNames.List(kernel.Prefix)) NetnsNames.Detach(ns);
        DomainCgroup.RemoveLeftovers(CgroupLayout.Detect(), kernel);
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
