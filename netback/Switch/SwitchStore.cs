using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;
using XenIo.VSwitch.Management;

namespace XenIo.Netback.Switch;

/// <summary>Reads and writes the switch configuration subtree of xenstore (<see cref="SwitchConfigMapping.Root"/>).</summary>
public static class SwitchStore
{
    /// <summary>Every node below <paramref name="root"/> as relative path → value; empty when the root does not exist.</summary>
    public static async Task<SortedDictionary<string, string>> ReadTreeAsync(XenstoreClient client, string root, uint transaction = 0, CancellationToken cancellationToken = default)
    {
        var keys = new SortedDictionary<string, string>(StringComparer.Ordinal);
        var pending = new Stack<string>();
        pending.Push("");
        while (pending.Count > 0)
        {
            var relative = pending.Pop();
            var path = relative.Length == 0 ? root : $"{root}/{relative}";
            string[] children;
            try
            {
                children = await client.DirectoryAsync(path, transaction, cancellationToken).ConfigureAwait(false);
            }
            catch (XenstoreException e) when (e.Error == XsError.ENOENT)
            {
                continue;
            }
            if (relative.Length > 0)
                keys[relative] = await client.TryReadAsync(path, transaction, cancellationToken).ConfigureAwait(false) ?? "";
            foreach (var child in children)
                if (child.Length > 0) pending.Push(relative.Length == 0 ? child : $"{relative}/{child}");
        }
        return keys;
    }

    /// <summary>Reads and parses the whole switch configuration; invalid parts are left out and reported.</summary>
    public static async Task<(SwitchConfig Config, bool Exists)> ReadAsync(XenstoreClient client, List<ConfigError> errors, CancellationToken cancellationToken = default)
    {
        var (keys, exists) = await client.TransactAsync(async tx =>
        {
            var exists = await client.TryReadAsync(SwitchConfigMapping.Root, tx, cancellationToken).ConfigureAwait(false) is not null;
            return (await ReadTreeAsync(client, SwitchConfigMapping.Root, tx, cancellationToken).ConfigureAwait(false), exists);
        }, cancellationToken: cancellationToken).ConfigureAwait(false);
        return (SwitchConfigMapping.Parse(keys, errors), exists);
    }

    /// <summary>Writes keys (relative to the root) in one transaction, after removing <paramref name="replace"/> (a relative subtree) if given.</summary>
    public static Task WriteAsync(XenstoreClient client, IReadOnlyDictionary<string, string> keys, string? replace = null, CancellationToken cancellationToken = default) =>
        client.TransactAsync(async tx =>
        {
            if (replace is not null)
            {
                try
                {
                    await client.RmAsync($"{SwitchConfigMapping.Root}/{replace}", tx, cancellationToken).ConfigureAwait(false);
                }
                catch (XenstoreException e) when (e.Error == XsError.ENOENT) { }
            }
            foreach (var (k, v) in keys) await client.WriteAsync($"{SwitchConfigMapping.Root}/{k}", v, tx, cancellationToken).ConfigureAwait(false);
        }, cancellationToken: cancellationToken);
}
