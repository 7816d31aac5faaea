using System.Text;
using FsCheck;
using FsCheck.Fluent;
using XenIo.Hypervisor.Store;
using Xunit;

namespace XenIo.Hypervisor.Tests.Store;

/// <summary>The daemon against a plain model of a xenstore tree, over random operation sequences.</summary>
public class ModelTests
{
    private static readonly string[] s_names = ["a", "b", "c", "d"];

    private sealed class Model
    {
        public readonly Dictionary<string, string> Values = new() { ["/m"] = "" };
        public readonly Dictionary<string, List<string>> Children = new() { ["/m"] = [] };

        public void Write(string path, string value)
        {
            if (!Values.ContainsKey(path)) Create(path);
            Values[path] = value;
        }

        public void Mkdir(string path)
        {
            if (!Values.ContainsKey(path)) Create(path);
        }

        private void Create(string path)
        {
            var parent = XenstorePath.Parent(path).ToString();
            if (!Values.ContainsKey(parent)) Create(parent);
            Children[parent].Add(XenstorePath.BaseName(path).ToString());
            Values[path] = "";
            Children[path] = [];
        }

        public void Rm(string path)
        {
            if (!Values.ContainsKey(path)) return;
            foreach (var c in Children[path].ToArray()) Rm(path + "/" + c);
            Values.Remove(path);
            Children.Remove(path);
            Children[XenstorePath.Parent(path).ToString()].Remove(XenstorePath.BaseName(path).ToString());
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public async Task RandomOperationsMatchTheModel(int seed)
    {
        await using var h = new StoreHarness();
        var c = await h.Dom0Async();
        await c.MkdirAsync("/m");
        var model = new Model();
        var rng = new Random(seed);
        string RandomPath()
        {
            var depth = rng.Next(1, 4);
            var sb = new StringBuilder("/m");
            for (var i = 0; i < depth; i++) sb.Append('/').Append(s_names[rng.Next(s_names.Length)]);
            return sb.ToString();
        }
        for (var step = 0; step < 400; step++)
        {
            var path = RandomPath();
            uint tx = 0;
            var inTx = rng.Next(5) == 0;
            if (inTx) tx = await c.TransactionStartAsync();
            switch (rng.Next(4))
            {
                case 0:
                    var v = "v" + step;
                    await c.WriteAsync(path, v, tx);
                    model.Write(path, v);
                    break;
                case 1:
                    await c.MkdirAsync(path, tx);
                    model.Mkdir(path);
                    break;
                case 2:
                    var parentExists = model.Values.ContainsKey(XenstorePath.Parent(path).ToString());
                    var e = await StoreHarness.ErrorOf(() => c.RmAsync(path, tx));
                    Assert.Equal(parentExists || model.Values.ContainsKey(path) ? XsError.None : XsError.ENOENT, e);
                    model.Rm(path);
                    break;
                default:
                    Assert.Equal(model.Values.GetValueOrDefault(path), await c.TryReadAsync(path, tx));
                    break;
            }
            if (inTx) Assert.True(await c.TransactionEndAsync(tx, commit: true));
            var probe = RandomPath();
            Assert.Equal(model.Values.GetValueOrDefault(probe), await c.TryReadAsync(probe));
            if (model.Children.TryGetValue(probe, out var kids)) Assert.Equal(kids, await c.DirectoryAsync(probe));
        }
    }

    [Fact]
    public void CanonicalizeNeverThrowsAndOnlyAcceptsValidPaths()
    {
        var dest = new char[XenstorePath.BufferChars];
        Prop.ForAll<byte[], bool>((raw, special) =>
        {
            var error = XenstorePath.Canonicalize(raw ?? [], "/local/domain/3", false, special, dest, out var n, out _);
            if (error != XsError.None) return true;
            var path = new string(dest, 0, n);
            return path.Length > 0 && !path.Contains("//") && (path == "/" || !path.EndsWith('/'))
                   && path.All(ch => XenstorePath.IsValidChar((byte)ch)) && (special || path[0] == '/');
        }).QuickCheckThrowOnFailure();
    }
}
