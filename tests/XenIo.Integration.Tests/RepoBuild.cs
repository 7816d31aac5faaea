namespace XenIo.Integration.Tests;

/// <summary>Where the integration tests find the repository and what `make build` put in it.</summary>
internal static class RepoBuild
{
    /// <summary>The directory holding XenIo.sln, above the test binaries; null outside a checkout.</summary>
    public static string? Root()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "XenIo.sln"))) return dir.FullName;
        return null;
    }

    /// <summary>The guest agent `make build` publishes (NativeAOT), else a JIT build; null when there is none.</summary>
    public static string? GuestAgent()
    {
        if (Root() is not { } repo) return null;
        string[] candidates = [Path.Combine(repo, "bin", "lib", "xenio-guest"),
            Path.Combine(repo, "guest", "bin", "Release", "net10.0", "xenio-guest"),
            Path.Combine(repo, "guest", "bin", "Debug", "net10.0", "xenio-guest")];
        return candidates.FirstOrDefault(File.Exists);
    }

    public const string NoGuestAgent = "no xenio-guest build found (bin/lib/xenio-guest or guest/bin/*/net10.0/xenio-guest): run `make build` first";
}
