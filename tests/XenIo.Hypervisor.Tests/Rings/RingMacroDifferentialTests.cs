using System.Diagnostics;
using System.Globalization;
using System.Text;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Rings;
using XenIo.Tests;
using Xunit;

namespace XenIo.Hypervisor.Tests.Rings;

/// <summary>
/// The same random scripts of ring operations run through Xen's own io/ring.h macros (a C program
/// compiled here with gcc against libxen-dev) and through <see cref="FrontRing{TReq,TRsp}"/> /
/// <see cref="BackRing{TReq,TRsp}"/>: every notify decision, count and index must be identical.
/// </summary>
public class RingMacroDifferentialTests
{
    private const string Program = """
        #include <stdint.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        #define mb() __sync_synchronize()
        #define rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
        #define wmb() __atomic_thread_fence(__ATOMIC_RELEASE)
        #include <xen/xen.h>
        #include <xen/grant_table.h>
        #include <xen/io/ring.h>
        #include <xen/io/netif.h>

        static _Alignas(4096) unsigned char page[65536];

        int main(void)
        {
            netif_tx_sring_t *s = (netif_tx_sring_t *)page;
            netif_tx_front_ring_t f;
            netif_tx_back_ring_t b;
            char op;
            unsigned long long a, c;
            while (scanf(" %c %llu %llu", &op, &a, &c) == 3) {
                long long r = 0;
                unsigned k = (unsigned)a;
                switch (op) {
                case 'I': /* bytes, start */
                    memset(page, 0, sizeof page);
                    SHARED_RING_INIT(s);
                    s->req_prod = s->rsp_prod = (RING_IDX)c;
                    s->req_event = s->rsp_event = (RING_IDX)c + 1;
                    FRONT_RING_ATTACH(&f, s, (RING_IDX)c, (unsigned)a);
                    BACK_RING_ATTACH(&b, s, (RING_IDX)c, (unsigned)a);
                    r = RING_SIZE(&f);
                    break;
                case 'W':
                    while (k-- && !RING_FULL(&f)) { RING_GET_REQUEST(&f, f.req_prod_pvt)->id = (uint16_t)f.req_prod_pvt; f.req_prod_pvt++; r++; }
                    break;
                case 'P': { int n; RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&f, n); r = n; break; }
                case 'C':
                    while (k-- && RING_HAS_UNCONSUMED_REQUESTS(&b)) { netif_tx_request_t q; RING_COPY_REQUEST(&b, b.req_cons, &q); b.req_cons++; r++; }
                    break;
                case 'R':
                    while (k-- && b.rsp_prod_pvt != b.req_cons) { RING_GET_RESPONSE(&b, b.rsp_prod_pvt)->id = (uint16_t)b.rsp_prod_pvt; b.rsp_prod_pvt++; r++; }
                    break;
                case 'Q': { int n; RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&b, n); r = n; break; }
                case 'F': { int w; RING_FINAL_CHECK_FOR_REQUESTS(&b, w); r = w != 0; break; }
                case 'D':
                    while (k-- && RING_HAS_UNCONSUMED_RESPONSES(&f)) { netif_tx_response_t p; RING_COPY_RESPONSE(&f, f.rsp_cons, &p); f.rsp_cons++; r++; }
                    break;
                case 'G': { int w; RING_FINAL_CHECK_FOR_RESPONSES(&f, w); r = w != 0; break; }
                }
                printf("%c %lld | %u %u %u %u | %u %u %u %u | %u %u\n", op, r,
                       s->req_prod, s->req_event, s->rsp_prod, s->rsp_event,
                       f.req_prod_pvt, f.rsp_cons, b.rsp_prod_pvt, b.req_cons,
                       (unsigned)RING_FREE_REQUESTS(&f), (unsigned)RING_HAS_UNCONSUMED_REQUESTS(&b));
            }
            return 0;
        }
        """;

    [SkippableFact]
    public void Random_scripts_give_the_same_notifications_and_indices_as_the_io_ring_h_macros()
    {
        Requires.Tool("gcc");
        Skip.IfNot(File.Exists("/usr/include/xen/io/ring.h"), "libxen-dev is not installed: run make deps");

        var script = new StringBuilder();
        var ours = new StringBuilder();
        var random = new Random(20261123);
        int[] slotChoices = [1, 2, 4, 16, 256, 1024];
        var memory = new RingTestMemory(65536);
        try
        {
            for (int run = 0; run < 60; run++)
            {
                int slots = slotChoices[random.Next(slotChoices.Length)];
                int bytes = SharedRingHeader.EntriesOffset + slots * 12;
                uint start = random.Next(3) switch
                {
                    0 => 0,
                    1 => uint.MaxValue - (uint)random.Next(0, 3 * slots + 2),
                    _ => (uint)random.NextInt64(0, 1L << 32),
                };
                script.Append(CultureInfo.InvariantCulture, $"I {bytes} {start}\n");
                memory.Span.Clear();
                var front = FrontRing<NetifTxRequest, NetifTxResponse>.Init(memory.Address, bytes, start);
                var back = BackRing<NetifTxRequest, NetifTxResponse>.Attach(memory.Address, bytes, start);
                Line(ours, 'I', front.Size, memory, front, back);

                for (int step = 0; step < 300; step++)
                {
                    char op = "WPCRQFDG"[random.Next(8)];
                    int k = random.Next(0, slots + 2);
                    script.Append(CultureInfo.InvariantCulture, $"{op} {k} 0\n");
                    long r = 0;
                    switch (op)
                    {
                        case 'W':
                            while (k-- > 0 && front.TryWriteRequest(new NetifTxRequest { Id = (ushort)front.RequestProducerPrivate })) r++;
                            break;
                        case 'P': r = front.PushRequests() ? 1 : 0; break;
                        case 'C': while (k-- > 0 && back.TryConsumeRequest(out _)) r++; break;
                        case 'R':
                            while (k-- > 0 && back.TryWriteResponse(new NetifTxResponse { Id = (ushort)back.ResponseProducerPrivate })) r++;
                            break;
                        case 'Q': r = back.PushResponses() ? 1 : 0; break;
                        case 'F': r = back.FinalCheckForRequests() ? 1 : 0; break;
                        case 'D': while (k-- > 0 && front.TryConsumeResponse(out _)) r++; break;
                        case 'G': r = front.FinalCheckForResponses() ? 1 : 0; break;
                    }
                    Line(ours, op, r, memory, front, back);
                }
                Assert.False(front.IsBroken || back.IsBroken);
            }
        }
        finally
        {
            memory.Dispose();
        }

        var theirs = RunC(script.ToString());
        var a = ours.ToString().Split('\n');
        var b = theirs.Split('\n');
        Assert.Equal(b.Length, a.Length);
        for (int i = 0; i < a.Length; i++)
            Assert.True(a[i] == b[i], $"step {i}: io/ring.h says '{b[i]}', ours '{a[i]}'");
    }

    private static void Line(StringBuilder sb, char op, long r, RingTestMemory m,
        in FrontRing<NetifTxRequest, NetifTxResponse> f, in BackRing<NetifTxRequest, NetifTxResponse> b)
    {
        // The back ring's count of unconsumed requests reads req_prod; copy so the caller's ring is untouched.
        var probe = b;
        sb.Append(CultureInfo.InvariantCulture,
            $"{op} {r} | {m.ReqProd} {m.ReqEvent} {m.RspProd} {m.RspEvent} | {f.RequestProducerPrivate} {f.ResponseConsumer} {b.ResponseProducerPrivate} {b.RequestConsumer} | {f.FreeRequests} {probe.UnconsumedRequests}\n");
    }

    private static string RunC(string script)
    {
        var dir = Directory.CreateTempSubdirectory("xenio-ring-macros-");
        try
        {
            var src = Path.Combine(dir.FullName, "ring_ops.c");
            var exe = Path.Combine(dir.FullName, "ring_ops");
            File.WriteAllText(src, Program);
            var (rc, _, err) = Exec("gcc", null, "-O2", "-std=gnu11", "-o", exe, src);
            Assert.True(rc == 0, "gcc: " + err);
            var (prc, output, perr) = Exec(exe, script);
            Assert.True(prc == 0, "ring_ops: " + perr);
            return output;
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    private static (int, string, string) Exec(string file, string? stdin, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var output = p.StandardOutput.ReadToEndAsync();
        var err = p.StandardError.ReadToEndAsync();
        if (stdin is not null) p.StandardInput.Write(stdin);
        p.StandardInput.Close();
        p.WaitForExit();
        return (p.ExitCode, output.GetAwaiter().GetResult(), err.GetAwaiter().GetResult());
    }
}
