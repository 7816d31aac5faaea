using System.Runtime.InteropServices;
using static XenIo.Hypervisor.Interop.Libc.Proc;

namespace XenIo.Hypervisor.Domains.Spawn;

/// <summary>
/// Starts a program with <c>posix_spawn</c>: exactly the descriptors placed with <see cref="Inherit"/>
/// and <see cref="Open"/> at the given numbers and nothing else (every higher descriptor is closed in
/// the child), default signal dispositions and an empty signal mask (the runtime ignores SIGPIPE and
/// blocks signals on some threads; a child must not inherit that), optionally a new session.
/// .NET's <c>Process</c> can do none of this, and a running .NET process must never fork: glibc's
/// posix_spawn uses CLONE_VM|CLONE_VFORK and runs no managed code in the child.
/// </summary>
public sealed class SpawnCommand
{
    private readonly string _path;
    private readonly List<string> _argv;
    private readonly List<string> _env;
    private readonly List<(SafeHandle? Handle, int Source, int Target)> _inherits = [];
    private readonly List<(int Target, string Path, int Flags)> _opens = [];

    public SpawnCommand(string path, IEnumerable<string> argv, IEnumerable<string> environment)
    {
        _path = path;
        _argv = [.. argv];
        _env = [.. environment];
        if (_argv.Count == 0) throw new ArgumentException("argv needs at least argv[0]", nameof(argv));
    }

    /// <summary>Calls setsid() in the child before the file actions, so an opened tty becomes its controlling terminal.</summary>
    public bool NewSession { get; init; }

    public string? WorkingDirectory { get; init; }

    /// <summary>The child gets <paramref name="handle"/>'s descriptor as <paramref name="targetFd"/>.</summary>
    public SpawnCommand Inherit(SafeHandle handle, int targetFd)
    {
        CheckTarget(targetFd);
        _inherits.Add((handle, (int)handle.DangerousGetHandle(), targetFd));
        return this;
    }

    /// <summary>The child gets the caller's raw descriptor <paramref name="sourceFd"/> as <paramref name="targetFd"/>.</summary>
    public SpawnCommand InheritFd(int sourceFd, int targetFd)
    {
        CheckTarget(targetFd);
        _inherits.Add((null, sourceFd, targetFd));
        return this;
    }

    /// <summary>The child opens <paramref name="path"/> as <paramref name="targetFd"/> (after setsid: a tty opened here becomes the controlling terminal).</summary>
    public SpawnCommand Open(int targetFd, string path, int flags)
    {
        CheckTarget(targetFd);
        _opens.Add((targetFd, path, flags));
        return this;
    }

    private void CheckTarget(int targetFd)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(targetFd);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(targetFd, 1000);
        if (_inherits.Exists(i => i.Target == targetFd) || _opens.Exists(o => o.Target == targetFd))
            throw new ArgumentException($"descriptor {targetFd} is already placed", nameof(targetFd));
    }

    /// <summary>Starts the child and returns its pid; throws <see cref="SpawnException"/> if it could not be executed.</summary>
    public unsafe int Start()
    {
        var maxTarget = 2;
        var maxSource = 2;
        foreach (var i in _inherits) { maxTarget = Math.Max(maxTarget, i.Target); maxSource = Math.Max(maxSource, i.Source); }
        foreach (var o in _opens) maxTarget = Math.Max(maxTarget, o.Target);
        // Sources are first copied above every source and target, so placing one can never clobber another
        // (and a source already at its target loses FD_CLOEXEC through the second dup2).
        var scratch = Math.Max(maxTarget, maxSource) + 1;

        var strings = new List<nint>();
        var fileActions = NativeMemory.AllocZeroed(FileActionsSize);
        var attr = NativeMemory.AllocZeroed(SpawnAttrSize);
        var sigset = NativeMemory.AllocZeroed(SigsetSize);
        var argv = (byte**)NativeMemory.AllocZeroed((nuint)(_argv.Count + 1), (nuint)sizeof(nint));
        var envp = (byte**)NativeMemory.AllocZeroed((nuint)(_env.Count + 1), (nuint)sizeof(nint));
        var added = new List<SafeHandle>();
        var actionsReady = false;
        var attrReady = false;
        try
        {
            foreach (var i in _inherits)
            {
                if (i.Handle is null) continue;
                var ok = false;
                i.Handle.DangerousAddRef(ref ok);
                added.Add(i.Handle);
            }
            byte* Utf8(string s)
            {
                var p = Marshal.StringToCoTaskMemUTF8(s);
                strings.Add(p);
                return (byte*)p;
            }
            for (var a = 0; a < _argv.Count; a++) argv[a] = Utf8(_argv[a]);
            for (var e = 0; e < _env.Count; e++) envp[e] = Utf8(_env[e]);

            Check(FileActionsInit(fileActions), "posix_spawn_file_actions_init");
            actionsReady = true;
            if (WorkingDirectory is not null) Check(FileActionsAddChdir(fileActions, Utf8(WorkingDirectory)), "addchdir");
            for (var n = 0; n < _inherits.Count; n++)
                Check(FileActionsAddDup2(fileActions, _inherits[n].Source, scratch + n), "adddup2");
            foreach (var o in _opens)
                Check(FileActionsAddOpen(fileActions, o.Target, Utf8(o.Path), o.Flags, 0), "addopen");
            for (var n = 0; n < _inherits.Count; n++)
                Check(FileActionsAddDup2(fileActions, scratch + n, _inherits[n].Target), "adddup2");
            Check(FileActionsAddCloseFrom(fileActions, maxTarget + 1), "addclosefrom_np");

            Check(SpawnAttrInit(attr), "posix_spawnattr_init");
            attrReady = true;
            SigEmptySet(sigset);
            Check(SpawnAttrSetSigMask(attr, sigset), "setsigmask");
            // Realtime signals too: the runtime ignores some of them. glibc refuses its own two reserved ones.
            for (var sig = 1; sig <= 64; sig++)
                if (sig != SIGKILL && sig != 19 /* SIGSTOP */) SigAddSet(sigset, sig);
            Check(SpawnAttrSetSigDefault(attr, sigset), "setsigdefault");
            var flags = (short)(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | (NewSession ? POSIX_SPAWN_SETSID : 0));
            Check(SpawnAttrSetFlags(attr, flags), "setflags");

            int pid;
            var rc = PosixSpawn(&pid, Utf8(_path), fileActions, attr, argv, envp);
            if (rc != 0)
                throw new SpawnException($"cannot start {_path}: {Marshal.GetPInvokeErrorMessage(rc)}", rc);
            return pid;
        }
        finally
        {
            if (actionsReady) FileActionsDestroy(fileActions);
            if (attrReady) SpawnAttrDestroy(attr);
            foreach (var h in added) h.DangerousRelease();
            foreach (var p in strings) Marshal.FreeCoTaskMem(p);
            NativeMemory.Free(fileActions);
            NativeMemory.Free(attr);
            NativeMemory.Free(sigset);
            NativeMemory.Free(argv);
            NativeMemory.Free(envp);
        }
    }

    private static void Check(int rc, string what)
    {
        if (rc != 0) throw new SpawnException($"{what}: {Marshal.GetPInvokeErrorMessage(rc)}", rc);
    }

    /// <summary>The environment a program started on behalf of a domain gets by default.</summary>
    public static string DefaultPath => "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
}

/// <summary>A program could not be started; <see cref="Errno"/> says why.</summary>
public sealed class SpawnException(string message, int errno) : Exception(message)
{
    public int Errno { get; } = errno;
}
