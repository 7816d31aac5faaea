using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;
using XenIo.Consoled.Access;
using XenIo.Consoled.Domains;
using XenIo.Consoled.Viewers;
using XenIo.Hypervisor.Daemons;

namespace XenIo.Consoled.Daemon;

/// <summary>
/// consoled's API socket (<see cref="ConsoleApiRequest"/>), through which <c>xenio console</c> attaches.
/// The socket is 0660 and group <c>xenio</c> when that group exists; the caller is identified by
/// SO_PEERCRED, so root and the administrators' group attach without a token and see tokens, anyone
/// else who can reach the socket must give the console's token.
/// </summary>
public sealed class ConsoleApiServer : IAsyncDisposable
{
    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(10);
    private readonly Socket _listener;
    private readonly ConsoledService _service;
    private readonly Func<XenDomainConsoles?> _domains;
    private readonly AdministratorCheck _administrators;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;

    public ConsoleApiServer(string path, ConsoledService service, Func<XenDomainConsoles?> domains, AdministratorCheck administrators, ILogger logger)
    {
        Path = path;
        _service = service;
        _domains = domains;
        _administrators = administrators;
        _logger = logger;
        _listener = ListeningSocket.Unix(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite, backlog: 64, prepare: GiveToAdministrators);
        _accepting = ListeningSocket.AcceptAsync(_listener, client => _ = Task.Run(() => ServeAsync(client)), message => _logger.LogWarning("console API: {Message}", message), _stop.Token);
    }

    public string Path { get; }

    /// <summary>The socket belongs to the administrators' group, when there is one, before anyone can reach it.</summary>
    private void GiveToAdministrators(string socketPath)
    {
        if (_administrators.GroupName is { Length: > 0 } group && Interop.Libc.GroupId(group) is { } gid && Interop.Libc.Chown(socketPath, uint.MaxValue, gid) != 0)
            _logger.LogWarning("cannot give {Path} to group {Group}", Path, group);
    }

    private async Task ServeAsync(Socket client)
    {
        bool handedOver = false;
        try
        {
            uint? uid = ListeningSocket.PeerUid(client);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
            timeout.CancelAfter(RequestTimeout);
            var line = await ReadLineAsync(client, timeout.Token).ConfigureAwait(false);
            if (line is null) return;
            if (!ConsoleApiRequest.TryParse(line, out var request, out var error))
            {
                await ReplyAsync(client, "error " + error).ConfigureAwait(false);
                return;
            }
            bool admin = uid is { } u && _administrators.IsAdministrator(u);
            switch (request.Verb)
            {
                case ConsoleApiVerb.List:
                    await ReplyAsync(client, List()).ConfigureAwait(false);
                    return;
                case ConsoleApiVerb.Token:
                {
                    if (!admin)
                    {
                        _logger.LogWarning("console API: uid {Uid} asked for the token of {Domain}: refused", uid, request.Domain);
                        await ReplyAsync(client, "error only root and the administrators' group see tokens").ConfigureAwait(false);
                        return;
                    }
                    if (Resolve(request.Domain!) is not { } name)
                    {
                        await ReplyAsync(client, $"error no console for '{request.Domain}'").ConfigureAwait(false);
                        return;
                    }
                    await ReplyAsync(client, "ok " + _service.Tokens.GetOrCreate(name)).ConfigureAwait(false);
                    return;
                }
                case ConsoleApiVerb.Attach:
                {
                    if (Resolve(request.Domain!) is not { } name)
                    {
                        await ReplyAsync(client, $"error no console for '{request.Domain}'").ConfigureAwait(false);
                        return;
                    }
                    if (!admin && (request.Token is null || !_service.Tokens.Verify(name, Encoding.ASCII.GetBytes(request.Token))))
                    {
                        _logger.LogWarning("console {Name}: uid {Uid} on the API socket refused: {Why}", name, uid,
                            request.Token is null ? "no token" : "wrong token");
                        await ReplyAsync(client, "error access denied: give the console's token (xenio console --auth TOKEN)").ConfigureAwait(false);
                        return;
                    }
                    await ReplyAsync(client, "ok " + name, close: false).ConfigureAwait(false);
                    var description = $"uid {uid?.ToString(CultureInfo.InvariantCulture) ?? "?"} (xenio console)";
                    handedOver = _service.Multiplexer.AttachLocal(name, client, new LocalAttach(description, request.Force), _stop.Token);
                    if (handedOver) _logger.LogInformation("console {Name}: {Viewer} attached{Force}", name, description, request.Force ? " (force)" : "");
                    return;
                }
            }
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException or ObjectDisposedException)
        {
        }
        finally
        {
            if (!handedOver) client.Dispose();
        }
    }

    private string? Resolve(string domain) =>
        _domains()?.Find(domain)?.Name ?? _service.Multiplexer.Find(domain)?.Name;

    private string List()
    {
        var ids = (_domains()?.Consoles ?? []).ToDictionary(c => c.Name, c => c.Domid);
        var text = new StringBuilder();
        foreach (var p in _service.Multiplexer.List())
        {
            text.Append(ids.TryGetValue(p.Name, out var id) ? id.ToString(CultureInfo.InvariantCulture) : "-")
                .Append(' ').Append(p.Name).Append(' ').Append(p.TelnetPort.ToString(CultureInfo.InvariantCulture))
                .Append(' ').Append(p.RawPort is { } r ? r.ToString(CultureInfo.InvariantCulture) : "-").Append('\n');
        }
        return text.ToString().TrimEnd('\n');
    }

    /// <summary>Reads one line byte by byte, so nothing after it (the client's first keystrokes) is consumed.</summary>
    private static async Task<string?> ReadLineAsync(Socket client, CancellationToken cancellationToken)
    {
        var line = new byte[ConsoleApiRequest.MaxLineBytes];
        var one = new byte[1];
        int length = 0;
        while (length < line.Length)
        {
            int n = await client.ReceiveAsync(one, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            if (n == 0) return null;
            if (one[0] == (byte)'\n') return Encoding.ASCII.GetString(line, 0, length).TrimEnd('\r');
            line[length++] = one[0];
        }
        await ReplyAsync(client, "error request line too long").ConfigureAwait(false);
        return null;
    }

    private static async Task ReplyAsync(Socket client, string text, bool close = true)
    {
        var bytes = Encoding.UTF8.GetBytes(text.Length == 0 ? "" : text + "\n");
        if (bytes.Length > 0) await client.SendAsync(bytes, SocketFlags.None).ConfigureAwait(false);
        if (close) client.Shutdown(SocketShutdown.Both);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _listener.Dispose();
        try
        {
            await _accepting.ConfigureAwait(false);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }
        try
        {
            File.Delete(Path);
        }
        catch (IOException)
        {
        }
        _stop.Dispose();
    }
}
