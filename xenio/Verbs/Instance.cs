using System.CommandLine;
using System.Net.Sockets;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;
using XenIo.Hypervisor.Store.Transports;
using XenIo.Netback.Daemon;

namespace XenIo.Cli.Verbs;

/// <summary>Finds a running instance: <c>--run-dir</c>, else <c>XENIO_RUN_DIR</c>, else the default run directory.</summary>
internal static class Instance
{
    public static Option<string> RunDirOption() => HyperdVerb.RunDirOption();

    public static string RunDirectory(ParseResult parse, Option<string> option) =>
        HyperdVerb.RunDirectory(parse.GetValue(option));

    /// <summary>A dom0 xenstore connection, or a <see cref="CliException"/> saying how to start xenstored.</summary>
    public static async Task<XenstoreClient> XenstoreAsync(string runDirectory, CancellationToken cancellationToken)
    {
        var socket = XenstoreSocketListener.PathUnder(runDirectory);
        try
        {
            return await XenstoreClient.ConnectAsync(socket, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is SocketException or IOException)
        {
            throw new CliException($"xenstored is not running: nothing answers on {socket} ({e.Message}); start it with `xenio up` or `xenio xenstored --run-dir {runDirectory}`");
        }
    }

    /// <summary>An HTTP client whose every connection goes to netback's Unix socket.</summary>
    public static HttpClient Netback(string runDirectory, out string socketPath)
    {
        var path = NetbackOptions.ApiSocketPath(runDirectory);
        socketPath = path;
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), ct).ConfigureAwait(false);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
        };
        return new HttpClient(handler) { BaseAddress = new Uri("http://netback/"), Timeout = Timeout.InfiniteTimeSpan };
    }

    public static CliException NetbackDown(string socketPath, Exception e) =>
        new($"netback is not running: nothing answers on {socketPath} ({e.Message}); start it with `xenio up` or `xenio netback --run-dir {Path.GetDirectoryName(socketPath)}`");

    /// <summary>Runs a verb body, turning expected failures into one line on stderr and exit code 1.</summary>
    public static async Task<int> Run(Func<Task<int>> body)
    {
        try
        {
            return await body().ConfigureAwait(false);
        }
        catch (CliException e)
        {
            await Console.Error.WriteLineAsync($"xenio: {e.Message}").ConfigureAwait(false);
            return 1;
        }
        catch (XenstoreException e)
        {
            await Console.Error.WriteLineAsync($"xenio: {e.Message}").ConfigureAwait(false);
            return 1;
        }
        catch (OperationCanceledException)
        {
            return 130;
        }
    }
}

/// <summary>A user-facing failure: the message is the whole explanation.</summary>
internal sealed class CliException(string message) : Exception(message);
