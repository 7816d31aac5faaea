using System.Runtime.InteropServices;
using XenIo.Hypervisor.Domains.Spawn;

namespace XenIo.Guest;

/// <summary>Writes <see cref="AgentMessage"/> lines to hyperd on the inherited notify pipe.</summary>
internal sealed class Notifier(int fd)
{
    public unsafe void Send(AgentMessage message)
    {
        var bytes = message.ToBytes();
        fixed (byte* p = bytes)
        {
            var done = 0;
            while (done < bytes.Length)
            {
                var n = Interop.Libc.Write(fd, p + done, (nuint)(bytes.Length - done));
                if (n < 0)
                {
                    if (Marshal.GetLastPInvokeError() == Interop.Libc.EINTR) continue;
                    throw new IOException($"notify: {Marshal.GetLastPInvokeErrorMessage()}");
                }
                done += (int)n;
            }
        }
    }
}
