using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Rings;
using XenIo.Tests;
using Xunit;

namespace XenIo.Hypervisor.Tests.Abi;

/// <summary>
/// Compiles a C probe against Debian's libxen-dev headers and checks that every size, field offset,
/// field size and constant of hypervisor/Abi equals what gcc computes from Xen's own definitions.
/// </summary>
public unsafe class AbiLayoutTests
{
    private const string XenInclude = "/usr/include/xen";

    private static readonly string[] Headers =
    [
        "xen/xen.h", "xen/grant_table.h", "xen/event_channel.h", "xen/io/ring.h", "xen/io/netif.h",
        "xen/io/blkif.h", "xen/io/console.h", "xen/io/xs_wire.h", "xen/io/xenbus.h",
    ];

    [SkippableFact]
    public void Every_struct_field_and_constant_matches_libxen_dev()
    {
        Requires.Tool("gcc");
        foreach (var h in Headers)
            Skip.IfNot(File.Exists(Path.Combine("/usr/include", h)), $"/usr/include/{h} is missing: install libxen-dev (make deps)");

        var probe = new Probe();
        Describe(probe);
        var c = probe.Compile();

        var mismatches = new List<string>();
        for (int i = 0; i < probe.Checks.Count; i++)
        {
            var (expr, expected) = probe.Checks[i];
            if (!c.Values.TryGetValue(i, out long actual)) mismatches.Add($"{expr}: gcc printed nothing");
            else if (actual != expected) mismatches.Add($"{expr}: C {actual}, C# {expected}");
        }
        for (int i = 0; i < XsdErrors.All.Length; i++)
        {
            var name = c.Errors.ElementAtOrDefault(i);
            if (name != XsdErrors.All[i]) mismatches.Add($"xsd_errors[{i}]: C {name ?? "(none)"}, C# {XsdErrors.All[i]}");
        }
        if (c.Errors.Count != XsdErrors.All.Length)
            mismatches.Add($"xsd_errors has {c.Errors.Count} entries, C# {XsdErrors.All.Length}");

        Assert.True(mismatches.Count == 0, $"{mismatches.Count} of {probe.Checks.Count} ABI checks differ:\n{string.Join('\n', mismatches)}");
        Assert.True(probe.Checks.Count > 250, $"only {probe.Checks.Count} checks: the probe lost its table");
    }

    /// <summary>Every struct in hypervisor/Abi has its size probed, so a new struct cannot slip by.</summary>
    [Fact]
    public void Probe_covers_every_abi_struct()
    {
        var probe = new Probe();
        Describe(probe);
        var abiStructs = typeof(SharedRingHeader).Assembly.GetTypes()
            .Where(t => t.Namespace == typeof(SharedRingHeader).Namespace && t.IsValueType && !t.IsEnum && t.IsPublic)
            .ToHashSet();
        var missing = abiStructs.Except(probe.Covered).Select(t => t.Name).Order().ToList();
        Assert.True(missing.Count == 0, "not probed against libxen-dev: " + string.Join(", ", missing));
    }

    private static void Describe(Probe p)
    {
        // io/ring.h: the shared header as DEFINE_RING_TYPES lays it out, and ring sizes.
        var sring = new SharedRingHeader();
        p.Size<SharedRingHeader>("offsetof(struct netif_tx_sring, ring)");
        p.Field(ref sring, ref sring.ReqProd, "struct netif_tx_sring", "req_prod");
        p.Field(ref sring, ref sring.ReqEvent, "struct netif_tx_sring", "req_event");
        p.Field(ref sring, ref sring.RspProd, "struct netif_tx_sring", "rsp_prod");
        p.Field(ref sring, ref sring.RspEvent, "struct netif_tx_sring", "rsp_event");
        p.Field(ref sring, ref sring.Private, "struct netif_tx_sring", "pvt");
        p.Const("offsetof(struct netif_tx_sring, req_prod)", SharedRingHeader.ReqProdOffset);
        p.Const("offsetof(struct netif_tx_sring, req_event)", SharedRingHeader.ReqEventOffset);
        p.Const("offsetof(struct netif_tx_sring, rsp_prod)", SharedRingHeader.RspProdOffset);
        p.Const("offsetof(struct netif_tx_sring, rsp_event)", SharedRingHeader.RspEventOffset);
        p.Const("offsetof(struct blkif_sring, ring)", SharedRingHeader.EntriesOffset);
        p.Const("sizeof(union netif_tx_sring_entry)", SharedRingMemory.EntrySize<NetifTxRequest, NetifTxResponse>());
        p.Const("sizeof(union netif_rx_sring_entry)", SharedRingMemory.EntrySize<NetifRxRequest, NetifRxResponse>());
        p.Const("sizeof(union blkif_sring_entry)", SharedRingMemory.EntrySize<BlkifRequest, BlkifResponse>());
        p.Const("sizeof(union blkif_sring_entry)", BlkifLimits.RequestSlotSize);
        p.Const("__CONST_RING_SIZE(netif_tx, 4096)", NetifLimits.TxRingSlots);
        p.Const("__CONST_RING_SIZE(netif_rx, 4096)", NetifLimits.RxRingSlots);
        p.Const("__CONST_RING_SIZE(blkif, 4096)", BlkifLimits.RingSlots);
        p.Const("__CONST_RING_SIZE(netif_tx, 4096)", RingSlots<NetifTxRequest, NetifTxResponse>(4096));
        p.Const("__CONST_RING_SIZE(netif_rx, 4096)", RingSlots<NetifRxRequest, NetifRxResponse>(4096));
        for (int order = 0; order <= RingGeometry.MaxRingPageOrder; order++)
        {
            int bytes = RingGeometry.PagesForOrder(order) * RingGeometry.PageSize;
            p.Const($"__CONST_RING_SIZE(blkif, {bytes})", RingGeometry.Slots(BlkifLimits.RequestSlotSize, RingGeometry.PagesForOrder(order)));
            p.Const($"__CONST_RING_SIZE(blkif, {bytes})", RingSlots<BlkifRequest, BlkifResponse>(bytes));
            p.Const($"__CONST_RING_SIZE(netif_tx, {bytes})", RingSlots<NetifTxRequest, NetifTxResponse>(bytes));
        }

        // io/netif.h
        var txReq = new NetifTxRequest();
        p.Size<NetifTxRequest>("sizeof(struct netif_tx_request)");
        p.Field(ref txReq, ref txReq.Gref, "struct netif_tx_request", "gref");
        p.Field(ref txReq, ref txReq.Offset, "struct netif_tx_request", "offset");
        p.Field(ref txReq, ref txReq.Flags, "struct netif_tx_request", "flags");
        p.Field(ref txReq, ref txReq.Id, "struct netif_tx_request", "id");
        p.Field(ref txReq, ref txReq.Size, "struct netif_tx_request", "size");
        var txRsp = new NetifTxResponse();
        p.Size<NetifTxResponse>("sizeof(struct netif_tx_response)");
        p.Field(ref txRsp, ref txRsp.Id, "struct netif_tx_response", "id");
        p.Field(ref txRsp, ref txRsp.Status, "struct netif_tx_response", "status");
        var rxReq = new NetifRxRequest();
        p.Size<NetifRxRequest>("sizeof(struct netif_rx_request)");
        p.Field(ref rxReq, ref rxReq.Id, "struct netif_rx_request", "id");
        p.Field(ref rxReq, ref rxReq.Pad, "struct netif_rx_request", "pad");
        p.Field(ref rxReq, ref rxReq.Gref, "struct netif_rx_request", "gref");
        var rxRsp = new NetifRxResponse();
        p.Size<NetifRxResponse>("sizeof(struct netif_rx_response)");
        p.Field(ref rxRsp, ref rxRsp.Id, "struct netif_rx_response", "id");
        p.Field(ref rxRsp, ref rxRsp.Offset, "struct netif_rx_response", "offset");
        p.Field(ref rxRsp, ref rxRsp.Flags, "struct netif_rx_response", "flags");
        p.Field(ref rxRsp, ref rxRsp.Status, "struct netif_rx_response", "status");
        var extra = new NetifExtraInfo();
        p.Size<NetifExtraInfo>("sizeof(struct netif_extra_info)");
        p.Field(ref extra, ref extra.Type, "struct netif_extra_info", "type");
        p.Field(ref extra, ref extra.Flags, "struct netif_extra_info", "flags");
        p.Const("offsetof(struct netif_extra_info, u)", NetifExtraInfo.UnionOffset);
        p.Field(ref extra, ref extra.GsoSize, "struct netif_extra_info", "u.gso.size");
        p.Field(ref extra, ref extra.GsoType, "struct netif_extra_info", "u.gso.type");
        p.Field(ref extra, ref extra.GsoPad, "struct netif_extra_info", "u.gso.pad");
        p.Field(ref extra, ref extra.GsoFeatures, "struct netif_extra_info", "u.gso.features");
        p.Field(ref extra, ref extra.McastAddr, "struct netif_extra_info", "u.mcast.addr");
        p.Field(ref extra, ref extra.HashType, "struct netif_extra_info", "u.hash.type");
        p.Field(ref extra, ref extra.HashAlgorithm, "struct netif_extra_info", "u.hash.algorithm");
        p.Field(ref extra, ref extra.HashValue, "struct netif_extra_info", "u.hash.value");
        p.Const("NETTXF_csum_blank", (long)NetTxFlags.CsumBlank);
        p.Const("NETTXF_data_validated", (long)NetTxFlags.DataValidated);
        p.Const("NETTXF_more_data", (long)NetTxFlags.MoreData);
        p.Const("NETTXF_extra_info", (long)NetTxFlags.ExtraInfo);
        p.Const("NETRXF_data_validated", (long)NetRxFlags.DataValidated);
        p.Const("NETRXF_csum_blank", (long)NetRxFlags.CsumBlank);
        p.Const("NETRXF_more_data", (long)NetRxFlags.MoreData);
        p.Const("NETRXF_extra_info", (long)NetRxFlags.ExtraInfo);
        p.Const("NETRXF_gso_prefix", (long)NetRxFlags.GsoPrefix);
        p.Const("XEN_NETIF_EXTRA_TYPE_NONE", (long)NetifExtraType.None);
        p.Const("XEN_NETIF_EXTRA_TYPE_GSO", (long)NetifExtraType.Gso);
        p.Const("XEN_NETIF_EXTRA_TYPE_MCAST_ADD", (long)NetifExtraType.McastAdd);
        p.Const("XEN_NETIF_EXTRA_TYPE_MCAST_DEL", (long)NetifExtraType.McastDel);
        p.Const("XEN_NETIF_EXTRA_TYPE_HASH", (long)NetifExtraType.Hash);
        p.Const("XEN_NETIF_EXTRA_FLAG_MORE", (long)NetifExtraFlags.More);
        p.Const("XEN_NETIF_GSO_TYPE_NONE", (long)NetifGsoType.None);
        p.Const("XEN_NETIF_GSO_TYPE_TCPV4", (long)NetifGsoType.TcpV4);
        p.Const("XEN_NETIF_GSO_TYPE_TCPV6", (long)NetifGsoType.TcpV6);
        p.Const("NETIF_RSP_DROPPED", NetifStatus.Dropped);
        p.Const("NETIF_RSP_ERROR", NetifStatus.Error);
        p.Const("NETIF_RSP_OKAY", NetifStatus.Okay);
        p.Const("NETIF_RSP_NULL", NetifStatus.Null);
        p.Const("XEN_NETIF_MAX_TX_SIZE", NetifLimits.MaxPacketSize);
        p.Const("XEN_NETIF_NR_SLOTS_MIN", NetifLimits.MinSlotsPerPacket);

        // io/blkif.h
        var seg = new BlkifRequestSegment();
        p.Size<BlkifRequestSegment>("sizeof(struct blkif_request_segment)");
        p.Field(ref seg, ref seg.Gref, "struct blkif_request_segment", "gref");
        p.Field(ref seg, ref seg.FirstSect, "struct blkif_request_segment", "first_sect");
        p.Field(ref seg, ref seg.LastSect, "struct blkif_request_segment", "last_sect");
        var breq = new BlkifRequest();
        p.Size<BlkifRequest>("sizeof(struct blkif_request)");
        p.Field(ref breq, ref breq.Operation, "struct blkif_request", "operation");
        p.Field(ref breq, ref breq.NrSegments, "struct blkif_request", "nr_segments");
        p.Field(ref breq, ref breq.Handle, "struct blkif_request", "handle");
        p.Field(ref breq, ref breq.Id, "struct blkif_request", "id");
        p.Field(ref breq, ref breq.SectorNumber, "struct blkif_request", "sector_number");
        p.Field(ref breq, ref breq.Seg, "struct blkif_request", "seg");
        p.Field(ref breq, ref breq.Seg[1], "struct blkif_request", "seg[1]");
        p.Const("offsetof(struct blkif_request, seg)", BlkifRequest.SegOffset);
        var disc = new BlkifRequestDiscard();
        p.Size<BlkifRequestDiscard>("sizeof(struct blkif_request_discard)");
        p.Field(ref disc, ref disc.Operation, "struct blkif_request_discard", "operation");
        p.Field(ref disc, ref disc.Flag, "struct blkif_request_discard", "flag");
        p.Field(ref disc, ref disc.Handle, "struct blkif_request_discard", "handle");
        p.Field(ref disc, ref disc.Id, "struct blkif_request_discard", "id");
        p.Field(ref disc, ref disc.SectorNumber, "struct blkif_request_discard", "sector_number");
        p.Field(ref disc, ref disc.NrSectors, "struct blkif_request_discard", "nr_sectors");
        p.Const("BLKIF_DISCARD_SECURE", BlkifRequestDiscard.FlagSecure);
        var ind = new BlkifRequestIndirect();
        p.Size<BlkifRequestIndirect>("sizeof(struct blkif_request_indirect)");
        p.Field(ref ind, ref ind.Operation, "struct blkif_request_indirect", "operation");
        p.Field(ref ind, ref ind.IndirectOp, "struct blkif_request_indirect", "indirect_op");
        p.Field(ref ind, ref ind.NrSegments, "struct blkif_request_indirect", "nr_segments");
        p.Field(ref ind, ref ind.Id, "struct blkif_request_indirect", "id");
        p.Field(ref ind, ref ind.SectorNumber, "struct blkif_request_indirect", "sector_number");
        p.Field(ref ind, ref ind.Handle, "struct blkif_request_indirect", "handle");
        p.Field(ref ind, ref ind.IndirectGrefs, "struct blkif_request_indirect", "indirect_grefs");
        p.Const("offsetof(struct blkif_request_indirect, indirect_grefs)", BlkifRequestIndirect.IndirectGrefsOffset);
        var brsp = new BlkifResponse();
        p.Size<BlkifResponse>("sizeof(struct blkif_response)");
        p.Field(ref brsp, ref brsp.Id, "struct blkif_response", "id");
        p.Field(ref brsp, ref brsp.Operation, "struct blkif_response", "operation");
        p.Field(ref brsp, ref brsp.Status, "struct blkif_response", "status");
        p.Const("BLKIF_OP_READ", (long)BlkifOperation.Read);
        p.Const("BLKIF_OP_WRITE", (long)BlkifOperation.Write);
        p.Const("BLKIF_OP_WRITE_BARRIER", (long)BlkifOperation.WriteBarrier);
        p.Const("BLKIF_OP_FLUSH_DISKCACHE", (long)BlkifOperation.FlushDiskCache);
        p.Const("BLKIF_OP_RESERVED_1", (long)BlkifOperation.Reserved1);
        p.Const("BLKIF_OP_DISCARD", (long)BlkifOperation.Discard);
        p.Const("BLKIF_OP_INDIRECT", (long)BlkifOperation.Indirect);
        p.Const("BLKIF_RSP_EOPNOTSUPP", BlkifStatus.EOpNotSupp);
        p.Const("BLKIF_RSP_ERROR", BlkifStatus.Error);
        p.Const("BLKIF_RSP_OKAY", BlkifStatus.Okay);
        p.Const("BLKIF_MAX_SEGMENTS_PER_REQUEST", BlkifLimits.MaxSegmentsPerRequest);
        p.Const("BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST", BlkifLimits.MaxIndirectPagesPerRequest);
        p.Const("4096 / sizeof(struct blkif_request_segment)", BlkifLimits.SegmentsPerIndirectFrame);

        // io/console.h
        var cons = new XenconsInterface();
        p.Size<XenconsInterface>("sizeof(struct xencons_interface)");
        p.Field(ref cons, ref cons.In, "struct xencons_interface", "in");
        p.Field(ref cons, ref cons.Out, "struct xencons_interface", "out");
        p.Field(ref cons, ref cons.InCons, "struct xencons_interface", "in_cons");
        p.Field(ref cons, ref cons.InProd, "struct xencons_interface", "in_prod");
        p.Field(ref cons, ref cons.OutCons, "struct xencons_interface", "out_cons");
        p.Field(ref cons, ref cons.OutProd, "struct xencons_interface", "out_prod");
        p.Const("offsetof(struct xencons_interface, in)", XenconsInterface.InOffset);
        p.Const("offsetof(struct xencons_interface, out)", XenconsInterface.OutOffset);
        p.Const("offsetof(struct xencons_interface, in_cons)", XenconsInterface.InConsOffset);
        p.Const("offsetof(struct xencons_interface, in_prod)", XenconsInterface.InProdOffset);
        p.Const("offsetof(struct xencons_interface, out_cons)", XenconsInterface.OutConsOffset);
        p.Const("offsetof(struct xencons_interface, out_prod)", XenconsInterface.OutProdOffset);
        p.Const("sizeof(((struct xencons_interface *)0)->in)", XenconsInterface.InSize);
        p.Const("sizeof(((struct xencons_interface *)0)->out)", XenconsInterface.OutSize);

        // io/xs_wire.h
        var msg = new XsdSockmsg();
        p.Size<XsdSockmsg>("sizeof(struct xsd_sockmsg)");
        p.Const("sizeof(struct xsd_sockmsg)", XsdSockmsg.Size);
        p.Field(ref msg, ref msg.Type, "struct xsd_sockmsg", "type");
        p.Field(ref msg, ref msg.ReqId, "struct xsd_sockmsg", "req_id");
        p.Field(ref msg, ref msg.TxId, "struct xsd_sockmsg", "tx_id");
        p.Field(ref msg, ref msg.Len, "struct xsd_sockmsg", "len");
        var xs = new XenstoreDomainInterface();
        p.Size<XenstoreDomainInterface>("sizeof(struct xenstore_domain_interface)");
        p.Field(ref xs, ref xs.Req, "struct xenstore_domain_interface", "req");
        p.Field(ref xs, ref xs.Rsp, "struct xenstore_domain_interface", "rsp");
        p.Field(ref xs, ref xs.ReqCons, "struct xenstore_domain_interface", "req_cons");
        p.Field(ref xs, ref xs.ReqProd, "struct xenstore_domain_interface", "req_prod");
        p.Field(ref xs, ref xs.RspCons, "struct xenstore_domain_interface", "rsp_cons");
        p.Field(ref xs, ref xs.RspProd, "struct xenstore_domain_interface", "rsp_prod");
        p.Field(ref xs, ref xs.ServerFeatures, "struct xenstore_domain_interface", "server_features");
        p.Field(ref xs, ref xs.Connection, "struct xenstore_domain_interface", "connection");
        p.Field(ref xs, ref xs.Error, "struct xenstore_domain_interface", "error");
        p.Const("offsetof(struct xenstore_domain_interface, req)", XenstoreDomainInterface.ReqOffset);
        p.Const("offsetof(struct xenstore_domain_interface, rsp)", XenstoreDomainInterface.RspOffset);
        p.Const("offsetof(struct xenstore_domain_interface, req_cons)", XenstoreDomainInterface.ReqConsOffset);
        p.Const("offsetof(struct xenstore_domain_interface, req_prod)", XenstoreDomainInterface.ReqProdOffset);
        p.Const("offsetof(struct xenstore_domain_interface, rsp_cons)", XenstoreDomainInterface.RspConsOffset);
        p.Const("offsetof(struct xenstore_domain_interface, rsp_prod)", XenstoreDomainInterface.RspProdOffset);
        p.Const("offsetof(struct xenstore_domain_interface, server_features)", XenstoreDomainInterface.ServerFeaturesOffset);
        p.Const("offsetof(struct xenstore_domain_interface, connection)", XenstoreDomainInterface.ConnectionOffset);
        p.Const("offsetof(struct xenstore_domain_interface, error)", XenstoreDomainInterface.ErrorOffset);
        foreach (var (name, value) in XsTypes) p.Const(name, (long)value);
        p.Const("XENSTORE_PAYLOAD_MAX", XenstoreLimits.PayloadMax);
        p.Const("XENSTORE_ABS_PATH_MAX", XenstoreLimits.AbsPathMax);
        p.Const("XENSTORE_REL_PATH_MAX", XenstoreLimits.RelPathMax);
        p.Const("XENSTORE_RING_SIZE", XenstoreLimits.RingSize);
        p.Const("XENSTORE_SERVER_FEATURE_RECONNECTION", XenstoreLimits.ServerFeatureReconnection);
        p.Const("XENSTORE_SERVER_FEATURE_ERROR", XenstoreLimits.ServerFeatureError);
        p.Const("XENSTORE_CONNECTED", XenstoreLimits.Connected);
        p.Const("XENSTORE_RECONNECT", XenstoreLimits.Reconnect);
        p.Const("XENSTORE_ERROR_NONE", XenstoreLimits.ErrorNone);
        p.Const("XENSTORE_ERROR_COMM", XenstoreLimits.ErrorComm);
        p.Const("XENSTORE_ERROR_RINGIDX", XenstoreLimits.ErrorRingIdx);
        p.Const("XENSTORE_ERROR_PROTO", XenstoreLimits.ErrorProto);

        // io/xenbus.h
        foreach (var state in Enum.GetValues<XenbusState>())
            p.Const($"XenbusState{state}", (long)state);

        // grant_table.h
        var gnt = new GrantEntryV1();
        p.Size<GrantEntryV1>("sizeof(struct grant_entry_v1)");
        p.Field(ref gnt, ref gnt.Flags, "struct grant_entry_v1", "flags");
        p.Field(ref gnt, ref gnt.Domid, "struct grant_entry_v1", "domid");
        p.Field(ref gnt, ref gnt.Frame, "struct grant_entry_v1", "frame");
        p.Const("offsetof(struct grant_entry_v1, flags)", GrantEntryV1.FlagsOffset);
        p.Const("offsetof(struct grant_entry_v1, domid)", GrantEntryV1.DomidOffset);
        p.Const("offsetof(struct grant_entry_v1, frame)", GrantEntryV1.FrameOffset);
        p.Const("GTF_invalid", (long)GrantFlags.Invalid);
        p.Const("GTF_permit_access", (long)GrantFlags.PermitAccess);
        p.Const("GTF_accept_transfer", (long)GrantFlags.AcceptTransfer);
        p.Const("GTF_transitive", (long)GrantFlags.Transitive);
        p.Const("GTF_type_mask", (long)GrantFlags.TypeMask);
        p.Const("GTF_readonly", (long)GrantFlags.Readonly);
        p.Const("GTF_reading", (long)GrantFlags.Reading);
        p.Const("GTF_writing", (long)GrantFlags.Writing);
        p.Const("GTF_PWT", (long)GrantFlags.PwtBit);
        p.Const("GTF_PCD", (long)GrantFlags.PcdBit);
        p.Const("GTF_PAT", (long)GrantFlags.PatBit);
        p.Const("GTF_sub_page", (long)GrantFlags.SubPage);
        foreach (var status in Enum.GetValues<GrantStatus>())
            p.Const("GNTST_" + GntstName(status), (long)status);
        p.Const("GNTTAB_NR_RESERVED_ENTRIES", GrantLimits.ReservedEntries);
        p.Const("GNTCOPY_source_gref", (long)GrantCopyFlags.SourceGref);
        p.Const("GNTCOPY_dest_gref", (long)GrantCopyFlags.DestGref);
        p.Const("4096 / sizeof(struct grant_entry_v1)", GrantLimits.EntriesPerFrame);

        // event_channel.h and xen.h
        foreach (var status in Enum.GetValues<EventChannelStatus>())
            p.Const("EVTCHNSTAT_" + status.ToString().ToLowerInvariant(), (long)status);
        p.Const("DOMID_FIRST_RESERVED", DomainIds.FirstReserved);
        p.Const("DOMID_SELF", DomainIds.Self);
        p.Const("DOMID_INVALID", DomainIds.Invalid);
    }

    private static int RingSlots<TReq, TRsp>(int bytes) where TReq : unmanaged where TRsp : unmanaged
    {
        // Measured through the ring itself, not just RingGeometry: nr_ents of a real FrontRing.
        void* mem = NativeMemory.AlignedAlloc((nuint)bytes, RingGeometry.PageSize);
        try { return FrontRing<TReq, TRsp>.Init((nint)mem, bytes).Size; }
        finally { NativeMemory.AlignedFree(mem); }
    }

    private static string GntstName(GrantStatus s) => s switch
    {
        GrantStatus.Okay => "okay",
        GrantStatus.GeneralError => "general_error",
        GrantStatus.BadDomain => "bad_domain",
        GrantStatus.BadGntref => "bad_gntref",
        GrantStatus.BadHandle => "bad_handle",
        GrantStatus.BadVirtAddr => "bad_virt_addr",
        GrantStatus.BadDevAddr => "bad_dev_addr",
        GrantStatus.NoDeviceSpace => "no_device_space",
        GrantStatus.PermissionDenied => "permission_denied",
        GrantStatus.BadPage => "bad_page",
        GrantStatus.BadCopyArg => "bad_copy_arg",
        GrantStatus.AddressTooBig => "address_too_big",
        GrantStatus.Eagain => "eagain",
        GrantStatus.NoSpace => "no_space",
        _ => "unknown_" + (int)s,
    };

    private static readonly (string, XsdSockmsgType)[] XsTypes =
    [
        ("XS_CONTROL", XsdSockmsgType.Control), ("XS_DEBUG", XsdSockmsgType.Debug),
        ("XS_DIRECTORY", XsdSockmsgType.Directory), ("XS_READ", XsdSockmsgType.Read),
        ("XS_GET_PERMS", XsdSockmsgType.GetPerms), ("XS_WATCH", XsdSockmsgType.Watch),
        ("XS_UNWATCH", XsdSockmsgType.Unwatch), ("XS_TRANSACTION_START", XsdSockmsgType.TransactionStart),
        ("XS_TRANSACTION_END", XsdSockmsgType.TransactionEnd), ("XS_INTRODUCE", XsdSockmsgType.Introduce),
        ("XS_RELEASE", XsdSockmsgType.Release), ("XS_GET_DOMAIN_PATH", XsdSockmsgType.GetDomainPath),
        ("XS_WRITE", XsdSockmsgType.Write), ("XS_MKDIR", XsdSockmsgType.Mkdir), ("XS_RM", XsdSockmsgType.Rm),
        ("XS_SET_PERMS", XsdSockmsgType.SetPerms), ("XS_WATCH_EVENT", XsdSockmsgType.WatchEvent),
        ("XS_ERROR", XsdSockmsgType.Error), ("XS_IS_DOMAIN_INTRODUCED", XsdSockmsgType.IsDomainIntroduced),
        ("XS_RESUME", XsdSockmsgType.Resume), ("XS_SET_TARGET", XsdSockmsgType.SetTarget),
        ("XS_RESET_WATCHES", XsdSockmsgType.ResetWatches), ("XS_DIRECTORY_PART", XsdSockmsgType.DirectoryPart),
        ("XS_TYPE_COUNT", XsdSockmsgType.TypeCount), ("XS_INVALID", XsdSockmsgType.Invalid),
    ];

    /// <summary>The table of C expressions and their C# values, and the probe program built from it.</summary>
    private sealed class Probe
    {
        public List<(string Expr, long Expected)> Checks { get; } = [];
        public HashSet<Type> Covered { get; } = [];

        public void Const(string cExpr, long expected) => Checks.Add((cExpr, expected));

        public void Size<T>(string cExpr) where T : unmanaged
        {
            Covered.Add(typeof(T));
            Checks.Add((cExpr, sizeof(T)));
        }

        /// <summary>Offset and size of one field, C# by address arithmetic on a real instance.</summary>
        public void Field<T, TField>(ref T instance, ref TField field, string cType, string cField)
            where T : unmanaged where TField : unmanaged
        {
            Covered.Add(typeof(TField));
            long offset = Unsafe.ByteOffset(ref Unsafe.As<T, byte>(ref instance), ref Unsafe.As<TField, byte>(ref field));
            Checks.Add(($"offsetof({cType}, {cField})", offset));
            Checks.Add(($"sizeof((({cType} *)0)->{cField})", sizeof(TField)));
        }

        public (Dictionary<int, long> Values, List<string> Errors) Compile()
        {
            var dir = Directory.CreateTempSubdirectory("xenio-abi-probe-");
            try
            {
                var src = new StringBuilder();
                src.AppendLine("#include <errno.h>\n#include <stdint.h>\n#include <stddef.h>\n#include <stdio.h>");
                foreach (var h in Headers) src.AppendLine($"#include <{h}>");
                src.AppendLine("int main(void) {");
                for (int i = 0; i < Checks.Count; i++)
                    src.AppendLine($"    printf(\"v %d %lld\\n\", {i}, (long long)({Checks[i].Expr}));");
                src.AppendLine("    for (size_t i = 0; i < sizeof(xsd_errors) / sizeof(xsd_errors[0]); i++) printf(\"e %s\\n\", xsd_errors[i].errstring);");
                src.AppendLine("    return 0;\n}");
                var cPath = Path.Combine(dir.FullName, "probe.c");
                var exe = Path.Combine(dir.FullName, "probe");
                File.WriteAllText(cPath, src.ToString());

                var (rc, _, err) = Run("gcc", "-std=gnu11", "-o", exe, cPath);
                Assert.True(rc == 0, $"gcc failed to compile the ABI probe:\n{err}");
                var (prc, output, perr) = Run(exe);
                Assert.True(prc == 0, $"probe exited {prc}: {perr}");

                var values = new Dictionary<int, long>();
                var errors = new List<string>();
                foreach (var line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries))
                {
                    var parts = line.Split(' ');
                    if (parts[0] == "v") values[int.Parse(parts[1])] = long.Parse(parts[2]);
                    else if (parts[0] == "e") errors.Add(parts[1]);
                }
                return (values, errors);
            }
            finally
            {
                dir.Delete(recursive: true);
            }
        }

        private static (int Rc, string Out, string Err) Run(string file, params string[] args)
        {
            var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in args) psi.ArgumentList.Add(a);
            using var p = Process.Start(psi)!;
            var stderr = p.StandardError.ReadToEndAsync();
            var stdout = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            return (p.ExitCode, stdout, stderr.Result);
        }
    }
}
