using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;
using XenIo.Hypervisor.Store.Transports;
using XenIo.Netback.Daemon;
using XenIo.Netback.Switch;
using XenIo.VSwitch.Management;
using Xunit;

namespace XenIo.Integration.Tests.Netback;

/// <summary>netback's service as the Generic Host runs it, against an in-process xenstored that can be taken away.</summary>
public sealed class NetbackServiceTests : IAsyncDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("xenio-nbsvc-").FullName;
    private readonly Xenstored _xenstored = new();
    private readonly XenstoreSocketListener _listener;
    private bool _listenerGone;

    public NetbackServiceTests() => _listener = new XenstoreSocketListener(_xenstored, XenstoreSocketListener.PathUnder(_dir));

    public async ValueTask DisposeAsync()
    {
        if (!_listenerGone) await _listener.DisposeAsync();
        _xenstored.Dispose();
        Directory.Delete(_dir, true);
    }

    private static NetbackService Netback(string dir, LinesLogger<NetbackService> log, StoppingLifetime lifetime) =>
        new(Options.Create(new NetbackOptions { RunDirectory = dir, HousekeepingInterval = TimeSpan.FromMilliseconds(20) }), log, lifetime);

    private static async Task WaitForLogAsync(LinesLogger<NetbackService> log, string text)
    {
        var deadline = DateTime.UtcNow + VifHarness.Limit;
        while (!log.Lines.Any(l => l.Contains(text, StringComparison.Ordinal)))
        {
            Assert.True(DateTime.UtcNow < deadline, $"netback never logged '{text}'; log:\n{string.Join('\n', log.Lines)}");
            await Task.Delay(10);
        }
    }

    [Fact]
    public async Task Losing_xenstored_ends_netback_with_one_error_line_and_a_failing_exit_code()
    {
        var log = new LinesLogger<NetbackService>();
        var lifetime = new StoppingLifetime();
        using var service = Netback(_dir, log, lifetime);
        var exitCode = Environment.ExitCode;
        try
        {
            await service.StartAsync(CancellationToken.None);
            await WaitForLogAsync(log, "netback serving");

            // xenstored goes away under netback: its connection closes.
            await _listener.DisposeAsync();
            _listenerGone = true;

            // The service ends by itself (no stop requested), says why once, and asks the host to stop with exit code 1.
            var ended = await Task.WhenAny(service.ExecuteTask!, Task.Delay(VifHarness.Limit));
            Assert.True(ended == service.ExecuteTask, $"netback did not end after xenstored went away; log:\n{string.Join('\n', log.Lines)}");
            Assert.True(lifetime.StopRequested, "the host was not asked to stop");
            Assert.Equal(1, Environment.ExitCode);
            var failure = Assert.Single(log.Lines, l => l.StartsWith("Error:", StringComparison.Ordinal));
            Assert.Contains("netback failed", failure);
            Assert.Contains("xenstore", failure, StringComparison.OrdinalIgnoreCase);
        }
        finally
        {
            Environment.ExitCode = exitCode;
            await service.StopAsync(CancellationToken.None).WaitAsync(VifHarness.Limit);
        }
    }

    [Fact]
    public async Task A_port_that_failed_comes_up_once_what_held_it_is_gone_without_a_config_change()
    {
        // The VXLAN port's UDP port is held by someone else when netback applies the config (as a TAP
        // still on another bridge would be); once it is free, the housekeeping tick's retry brings it up.
        var holder = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        holder.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var udp = ((IPEndPoint)holder.LocalEndPoint!).Port;
        var vxlan = new PortConfig("v1", "vxlan")
        {
            Options = new SortedDictionary<string, string> { ["local"] = $"127.0.0.1:{udp}", ["vni"] = "7", ["remotes"] = "127.0.0.2" },
        };
        await using (var xs = await XenstoreClient.ConnectAsync(_listener.SocketPath))
            await SwitchStore.WriteAsync(xs, SwitchConfigMapping.ToKeys(new SwitchConfig(new Dictionary<string, BridgeConfig>
            {
                ["br0"] = new("br0") { Ports = new Dictionary<string, PortConfig> { ["v1"] = vxlan } },
            })));

        var log = new LinesLogger<NetbackService>();
        using var service = Netback(_dir, log, new StoppingLifetime());
        try
        {
            await service.StartAsync(CancellationToken.None);
            await WaitForLogAsync(log, "port br0/v1:");
            holder.Dispose();
            await WaitForLogAsync(log, "port br0/v1 (vxlan) added");
        }
        finally
        {
            holder.Dispose();
            await service.StopAsync(CancellationToken.None).WaitAsync(VifHarness.Limit);
        }
    }

    private sealed class LinesLogger<T> : ILogger<T>
    {
        public ConcurrentQueue<string> Lines { get; } = new();

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Lines.Enqueue($"{logLevel}: {formatter(state, exception)}");
    }

    private sealed class StoppingLifetime : IHostApplicationLifetime
    {
        private readonly CancellationTokenSource _stopping = new();

        public bool StopRequested => _stopping.IsCancellationRequested;
        public CancellationToken ApplicationStarted => CancellationToken.None;
        public CancellationToken ApplicationStopping => _stopping.Token;
        public CancellationToken ApplicationStopped => CancellationToken.None;

        public void StopApplication() => _stopping.Cancel();
    }
}
