using System.Net.Sockets;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace XenIo.Hypervisor.Daemons;

/// <summary>
/// The shape every dom0 backend daemon (netback, blkback, consoled) shares under the Generic Host: one
/// <see cref="RunAsync"/> that serves until stopped; a failure is logged in one line, sets the exit
/// code and stops the host, so <c>xenio up</c> sees the daemon exit and restarts it.
/// </summary>
public abstract class BackendDaemon(string name, ILogger logger, IHostApplicationLifetime lifetime) : BackgroundService
{
    protected ILogger Logger { get; } = logger;

    protected abstract Task RunAsync(CancellationToken stoppingToken);

    /// <summary>Runs after <see cref="RunAsync"/> ends, however it ended (devices to close).</summary>
    protected virtual ValueTask CleanUpAsync() => ValueTask.CompletedTask;

    protected sealed override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            await RunAsync(stoppingToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            Logger.LogError("{Daemon} failed: {Message}", name, e.Message);
            Environment.ExitCode = 1;
            lifetime.StopApplication();
        }
        finally
        {
            await CleanUpAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Connects to another daemon's socket, retrying while it is not up yet (<c>xenio up</c> starts them
    /// together) until <paramref name="wait"/> has passed; then fails naming the socket and the fix.
    /// </summary>
    public static async Task<T> ConnectWithRetryAsync<T>(Func<Task<T>> connect, string socket, string peer, TimeSpan wait, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + wait;
        while (true)
        {
            try
            {
                return await connect().ConfigureAwait(false);
            }
            catch (Exception e) when (e is SocketException or IOException && DateTime.UtcNow < deadline)
            {
                await Task.Delay(200, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is SocketException or IOException)
            {
                throw new IOException($"{peer} is not answering on {socket} ({e.Message}); start the daemons with `xenio up`", e);
            }
        }
    }
}
