using XenIo.Blkback.Xenbus;
using XenIo.Hypervisor.Abi;
using Xunit;

namespace XenIo.Blkback.Tests.Xenbus;

public class VbdBackendMachineTests
{
    private static readonly VbdFeatures Features = new()
    {
        Sectors = 131072,
        Discard = true,
        DiscardGranularity = 4096,
        Info = 0,
        SectorSize = 512,
        PhysicalSectorSize = 4096,
    };

    private static Dictionary<string, string> Fe(params (string k, string v)[] kv) => kv.ToDictionary(x => x.k, x => x.v);

    private static string[] Keys(IEnumerable<VbdAction> actions) =>
        actions.Select(a => a switch
        {
            VbdWriteKey w => $"{w.Key}={w.Value}",
            VbdSwitchState s => $"state={(int)s.State}",
            VbdConnectRings => "connect",
            VbdDisconnectRings => "disconnect",
            VbdReportError => "error",
            _ => "?",
        }).ToArray();

    [Fact]
    public void Start_publishes_probe_keys_in_order_then_initwait()
    {
        var m = new VbdBackendMachine(Features);
        Assert.Equal(["feature-max-indirect-segments=256", "multi-queue-max-queues=4", "max-ring-page-order=4", "state=2"], Keys(m.Start()));
        Assert.Empty(m.Start());
        Assert.Equal(XenbusState.InitWait, m.State);
    }

    [Fact]
    public void Single_page_ring_connects_and_publishes_the_disk()
    {
        var m = new VbdBackendMachine(Features);
        m.Start();
        var fe = Fe(("ring-ref", "8"), ("event-channel", "5"), ("protocol", "x86_64-abi"), ("feature-persistent", "1"));
        var actions = m.OnFrontendChanged(XenbusState.Initialised, fe);
        var connect = Assert.IsType<VbdConnectRings>(Assert.Single(actions));
        Assert.Equal(0, connect.Setup.RingPageOrder);
        Assert.True(connect.Setup.Persistent);
        var q = Assert.Single(connect.Setup.Queues);
        Assert.Equal([8u], q.RingRefs);
        Assert.Equal(5u, q.EventChannel);

        Assert.Empty(m.OnFrontendChanged(XenbusState.Initialised, fe)); // repeated watch: nothing twice
        Assert.Equal(
        [
            "feature-flush-cache=1", "feature-discard=1", "discard-granularity=4096", "discard-alignment=0", "discard-secure=0",
            "feature-barrier=1", "feature-persistent=1", "sectors=131072", "info=0", "sector-size=512", "physical-sector-size=4096", "state=4",
        ], Keys(m.OnRingsConnected()));
        Assert.Equal(XenbusState.Connected, m.State);
        Assert.Empty(m.OnFrontendChanged(XenbusState.Connected, fe));
        Assert.Empty(m.OnRingsConnected());
    }

    [Fact]
    public void Multi_page_multi_queue_rings()
    {
        var m = new VbdBackendMachine(Features);
        m.Start();
        var fe = Fe(("multi-queue-num-queues", "2"), ("ring-page-order", "1"),
            ("queue-0/ring-ref0", "10"), ("queue-0/ring-ref1", "11"), ("queue-0/event-channel", "7"),
            ("queue-1/ring-ref0", "12"), ("queue-1/ring-ref1", "13"), ("queue-1/event-channel", "8"));
        var c = Assert.IsType<VbdConnectRings>(Assert.Single(m.OnFrontendChanged(XenbusState.Initialised, fe)));
        Assert.Equal(2, c.Setup.RingPages);
        Assert.Equal(2, c.Setup.Queues.Count);
        Assert.Equal([12u, 13u], c.Setup.Queues[1].RingRefs);
        Assert.Equal(8u, c.Setup.Queues[1].EventChannel);
        Assert.False(c.Setup.Persistent);
    }

    public static TheoryData<string, (string, string)[]> BadFrontends => new()
    {
        { "no ring-ref", [("event-channel", "5")] },
        { "no event-channel", [("ring-ref", "8")] },
        { "port 0", [("ring-ref", "8"), ("event-channel", "0")] },
        { "32-bit abi", [("ring-ref", "8"), ("event-channel", "5"), ("protocol", "x86_32-abi")] },
        { "order 5", [("ring-page-order", "5"), ("ring-ref0", "8"), ("event-channel", "5")] },
        { "order missing ref", [("ring-page-order", "1"), ("ring-ref0", "8"), ("event-channel", "5")] },
        { "negative ref", [("ring-ref", "-8"), ("event-channel", "5")] },
        { "spaces", [("ring-ref", " 8"), ("event-channel", "5")] },
        { "hex", [("ring-ref", "0x8"), ("event-channel", "5")] },
        { "overflow", [("ring-ref", "4294967296"), ("event-channel", "5")] },
        { "too many queues", [("multi-queue-num-queues", "5"), ("ring-ref", "8"), ("event-channel", "5")] },
        { "zero queues", [("multi-queue-num-queues", "0"), ("ring-ref", "8"), ("event-channel", "5")] },
        { "same page twice", [("ring-page-order", "1"), ("ring-ref0", "8"), ("ring-ref1", "8"), ("event-channel", "5")] },
    };

    [Theory]
    [MemberData(nameof(BadFrontends))]
    public void Bad_frontend_keys_fail_this_vbd_with_one_error(string why, (string, string)[] kv)
    {
        var m = new VbdBackendMachine(Features);
        m.Start();
        var actions = m.OnFrontendChanged(XenbusState.Initialised, Fe(kv));
        Assert.True(Keys(actions).SequenceEqual(["error", "state=5"]), why);
        Assert.Equal(XenbusState.Closing, m.State);
        // It stays down until the frontend starts over.
        Assert.Empty(m.OnFrontendChanged(XenbusState.Initialised, Fe(("ring-ref", "8"), ("event-channel", "5"))));
    }

    [Fact]
    public void Teardown_is_idempotent_and_a_frontend_can_start_over()
    {
        var m = new VbdBackendMachine(Features);
        m.Start();
        var fe = Fe(("ring-ref", "8"), ("event-channel", "5"));
        m.OnFrontendChanged(XenbusState.Initialised, fe);
        m.OnRingsConnected();
        Assert.Equal(["disconnect", "state=5"], Keys(m.OnFrontendChanged(XenbusState.Closing, fe)));
        Assert.Empty(m.OnFrontendChanged(XenbusState.Closing, fe));
        Assert.Equal(["state=6"], Keys(m.OnFrontendChanged(XenbusState.Closed, fe)));
        Assert.Empty(m.OnFrontendChanged(XenbusState.Closed, fe));
        Assert.Equal(["state=2"], Keys(m.OnFrontendChanged(XenbusState.Initialising, fe)));
        Assert.Equal(["connect"], Keys(m.OnFrontendChanged(XenbusState.Initialised, fe)));
        Assert.Equal("state=4", Keys(m.OnRingsConnected()).Last());
    }

    [Fact]
    public void Frontend_restart_while_connected_disconnects_and_offers_again()
    {
        var m = new VbdBackendMachine(Features);
        m.Start();
        var fe = Fe(("ring-ref", "8"), ("event-channel", "5"));
        m.OnFrontendChanged(XenbusState.Initialised, fe);
        m.OnRingsConnected();
        Assert.Equal(["disconnect", "state=2"], Keys(m.OnFrontendChanged(XenbusState.Initialising, fe)));
        Assert.Equal(["connect"], Keys(m.OnFrontendChanged(XenbusState.Connected, fe)));
    }

    [Fact]
    public void Ring_failures_close_once()
    {
        var m = new VbdBackendMachine(Features);
        m.Start();
        m.OnFrontendChanged(XenbusState.Initialised, Fe(("ring-ref", "8"), ("event-channel", "5")));
        Assert.Equal(["error", "disconnect", "state=5"], Keys(m.OnRingsFailed("bad gref")));
        Assert.Empty(m.OnRingsFailed("again"));
        Assert.Empty(m.OnRingBroken("again"));
        Assert.Equal(["state=6"], Keys(m.OnFrontendChanged(XenbusState.Unknown, Fe())));
    }

    [Fact]
    public void No_discard_publishes_feature_discard_0_only()
    {
        var m = new VbdBackendMachine(Features with { Discard = false, Info = 4 });
        m.Start();
        m.OnFrontendChanged(XenbusState.Initialised, Fe(("ring-ref", "8"), ("event-channel", "5")));
        var keys = Keys(m.OnRingsConnected());
        Assert.Contains("feature-discard=0", keys);
        Assert.DoesNotContain(keys, k => k.StartsWith("discard-", StringComparison.Ordinal));
        Assert.Contains("info=4", keys);
    }

    /// <summary>Random frontend state sequences: the machine never throws, never connects twice without a disconnect between.</summary>
    [Fact]
    public void Random_state_sequences_keep_connect_and_disconnect_paired()
    {
        var rng = new Random(5);
        var good = Fe(("ring-ref", "8"), ("event-channel", "5"));
        var bad = Fe(("ring-ref", "x"));
        for (int run = 0; run < 2000; run++)
        {
            var m = new VbdBackendMachine(Features);
            m.Start();
            int open = 0;
            for (int step = 0; step < 30; step++)
            {
                IReadOnlyList<VbdAction> actions = rng.Next(6) switch
                {
                    0 => m.OnRingsConnected(),
                    1 => m.OnRingsFailed("x"),
                    2 => m.Detach(),
                    _ => m.OnFrontendChanged((XenbusState)rng.Next(10), rng.Next(4) == 0 ? bad : good),
                };
                foreach (var a in actions)
                {
                    if (a is VbdConnectRings) { Assert.Equal(0, open); open++; }
                    if (a is VbdDisconnectRings) { Assert.Equal(1, open); open--; }
                }
                if (m.State is XenbusState.Closing or XenbusState.Closed) Assert.Equal(0, open);
            }
        }
    }
}
