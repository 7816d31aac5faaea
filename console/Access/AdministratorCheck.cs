using XenIo.Consoled.Interop;

namespace XenIo.Consoled.Access;

/// <summary>
/// Who may attach to a console without a token: root, and members of the administrators' group
/// (<c>xenio</c> by default), primary or supplementary, as the system's name service says.
/// </summary>
public sealed class AdministratorCheck
{
    public const string DefaultGroup = "xenio";

    public AdministratorCheck(string? group = DefaultGroup)
    {
        GroupName = group;
    }

    public string? GroupName { get; }

    public unsafe bool IsAdministrator(uint uid)
    {
        if (uid == 0) return true;
        if (string.IsNullOrEmpty(GroupName)) return false;

        var buffer = new byte[16 * 1024];
        fixed (byte* buf = buffer)
        {
            Libc.Group group;
            Libc.Group* groupResult;
            if (Libc.GetGrNam(GroupName, &group, buf, (nuint)(buffer.Length / 2), &groupResult) != 0 || groupResult is null) return false;
            uint adminGid = group.Gid;

            Libc.Passwd pwd;
            Libc.Passwd* pwdResult;
            byte* second = buf + buffer.Length / 2;
            if (Libc.GetPwUid(uid, &pwd, second, (nuint)(buffer.Length / 2), &pwdResult) != 0 || pwdResult is null) return false;
            if (pwd.Gid == adminGid) return true;

            const int max = 1024;
            uint* groups = stackalloc uint[max];
            int count = max;
            if (Libc.GetGroupList(pwd.Name, pwd.Gid, groups, &count) < 0) return false;
            for (int i = 0; i < count; i++)
            {
                if (groups[i] == adminGid) return true;
            }
        }
        return false;
    }
}
