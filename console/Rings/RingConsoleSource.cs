using System.Diagnostics;
using Microsoft.Extensions.Logging;
using XenIo.Hypervisor.Abi;

namespace XenIo.Consoled.Rings;

/// <summary>Rate limit settings for guest output (xenconsoled: 30 events per 200 ms).</summary>
public sealed record RateLimit(long BytesPerPeriod, int EventsPerPeriod, TimeSpan Period)
{
    /// <summary>
    /// 64 KiB and 300 wake-ups per 100 ms: about 640 KB/s, fifty times a 115,200-baud serial line,
    /// while a guest spinning on its doorbell costs us at most 3,000 wake-ups a second.
    /// </summary>
    public static RateLimit Default { get; } = new(64 * 1024, 300, TimeSpan.FromMilliseconds(100));

    public static RateLimit Unlimited { get; } = new(0, 0, TimeSpan.FromMilliseconds(100));
}

/// <summary>
/// A Xen console backend: drains the guest's <c>out</c> ring into the console on every event, under
/// the rate limit, and feeds viewer input into <c>in</c>. A ring whose indices are impossible is
/// disconnected with one log line; the guest gets nothing more from us, everything else carries on.
/// </summary>
public sealed class RingConsoleSource : IConsoleSource
{
    private readonly ConsoleRing _ring;
    private readonly IConsoleDoorbell _doorbell;
    private readonly GuestOutputRateLimiter _limiter;
    private readonly ILogger _logger;
    private readonly string _name;
    private readonly AsyncLatch _inputSpace = new();
    private readonly SemaphoreSlim _inputGate = new(1, 1);
    private volatile bool _broken;

    public RingConsoleSource(string name, nint page, IConsoleDoorbell doorbell, RateLimit rateLimit, ILogger logger)
    {
        _name = name;
        _ring = new ConsoleRing(page);
        _doorbell = doorbell;
        _limiter = new GuestOutputRateLimiter(rateLimit.BytesPerPeriod, rateLimit.EventsPerPeriod, rateLimit.Period);
        _logger = logger;
    }

    public bool IsBroken => _broken;

    public long Throttles => _limiter.Throttles;

    private static long Now => Stopwatch.GetElapsedTime(0).Ticks;

    public async Task RunAsync(IConsoleOutput output, CancellationToken cancellationToken)
    {
        var buffer = new byte[XenconsInterface.OutSize];
        bool throttledLogged = false;
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                // Drain what is there now; a kick that arrives meanwhile stays latched for the wait below.
                while (true)
                {
                    var pause = _limiter.ThrottleFor(Now);
                    if (pause > TimeSpan.Zero)
                    {
                        if (!throttledLogged)
                        {
                            _logger.LogWarning("console {Name}: guest output over the rate limit, throttled", _name);
                            throttledLogged = true;
                        }
                        await Task.Delay(pause, cancellationToken).ConfigureAwait(false);
                        continue;
                    }
                    int allowance = _limiter.Allowance(Now, buffer.Length);
                    if (_ring.ReadOutput(buffer.AsSpan(0, allowance), out int read) == ConsoleRingStatus.Broken)
                    {
                        Disconnect(output, "out");
                        return;
                    }
                    if (read == 0) break;
                    _limiter.CountBytes(Now, read);
                    output.Write(buffer.AsSpan(0, read));
                    _doorbell.Notify();
                }
                _inputSpace.Set();
                await _doorbell.WaitAsync(cancellationToken).ConfigureAwait(false);
                _limiter.CountEvent(Now);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        finally
        {
            _inputSpace.Close();
        }
    }

    private void Disconnect(IConsoleOutput output, string which)
    {
        _broken = true;
        _inputSpace.Close();
        _logger.LogWarning("console {Name}: guest ring '{Ring}' claims more than its size; console disconnected", _name, which);
        output.Notice($"console ring of {_name} is broken; disconnected");
    }

    public async ValueTask<bool> WriteInputAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        await _inputGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            while (!data.IsEmpty)
            {
                if (_broken) return false;
                if (_ring.WriteInput(data.Span, out int written) == ConsoleRingStatus.Broken)
                {
                    _broken = true;
                    _logger.LogWarning("console {Name}: guest ring 'in' claims more than its size; console disconnected", _name);
                    return false;
                }
                if (written > 0)
                {
                    _doorbell.Notify();
                    data = data[written..];
                    continue;
                }
                // Full: the output loop sets the latch after each guest kick; the timeout covers a guest
                // that consumes without kicking (it owes us nothing).
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                timeout.CancelAfter(TimeSpan.FromMilliseconds(50));
                try
                {
                    if (!await _inputSpace.WaitAsync(timeout.Token).ConfigureAwait(false)) return false;
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                }
            }
            return true;
        }
        finally
        {
            _inputGate.Release();
        }
    }
}
