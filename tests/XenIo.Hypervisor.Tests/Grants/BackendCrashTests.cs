using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Tests.Hypercalls;
using XenIo.Tests;
using Xunit;

namespace XenIo.Hypervisor.Tests.Grants;

public class BackendCrashTests
{
    /// <summary>
    /// A backend process maps grants (read-only and writable) and is SIGKILLed while holding them.
    /// hyperd sees its hypercall connection close and releases the pins, so the guest can end access
    /// on every one of them.
    /// </summary>
    [Fact]
    public void Guest_can_end_access_after_a_backend_holding_mappings_is_killed()
    {
        using var t = new CoreTestHost();
        var domain = t.Host.CreateDomain(2, "crash", frames: 256);
        var table = domain.GrantTable;
        var refs = new List<(uint Ref, bool ReadOnly)>();
        for (uint i = 0; i < 12; i++)
        {
            bool ro = i % 3 == 0;
            refs.Add((table.GrantAccess(DomainIds.Dom0, domain.GrantFrames + 10 + i, ro), ro));
        }
        // Two mappings of one ref (one read-only, one writable) from the same backend.
        refs.Add((refs[1].Ref, true));

        var args = new List<string> { t.Host.HypercallSocketPath, "2" };
        args.AddRange(refs.Select(r => r.ReadOnly ? $"{r.Ref}:ro" : r.Ref.ToString()));
        using var backend = Peer.Start("core-map-holder", [.. args]);
        Assert.Equal($"mapped {refs.Count}", CoreTestHost.ReadLineStartingWith(backend, "mapped "));

        foreach (var (gref, ro) in refs)
        {
            var flags = table.Read(gref).Flags;
            Assert.True((flags & GrantFlags.Reading) != 0, $"ref {gref} not marked reading");
            Assert.Equal(!ro || gref == refs[1].Ref, (flags & GrantFlags.Writing) != 0);
            Assert.False(table.EndAccess(gref), $"ref {gref} ended while mapped");
        }

        backend.Kill(); // SIGKILL on Linux
        backend.WaitForExit();

        var distinct = refs.Select(r => r.Ref).Distinct().ToList();
        var deadline = Environment.TickCount64 + 20_000;
        var ended = new HashSet<uint>();
        while (ended.Count < distinct.Count && Environment.TickCount64 < deadline)
        {
            foreach (var gref in distinct)
                if (!ended.Contains(gref) && table.EndAccess(gref)) ended.Add(gref);
            if (ended.Count < distinct.Count) Thread.Sleep(10);
        }
        Assert.Equal(distinct.Count, ended.Count);
        Assert.All(distinct, gref => Assert.Equal(GrantFlags.Invalid, table.Read(gref).Flags));
    }
}
