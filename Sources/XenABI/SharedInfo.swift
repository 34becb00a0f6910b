/// Offsets inside the shared_info page and the vcpu_info / vcpu_time_info structs
/// (public/xen.h, arch-x86/xen.h). The hypervisor updates these in guest memory in
/// place, so they are offsets rather than whole-struct codecs.
public enum SharedInfoLayout: WireLayout {
    public static let size = 0xc40
    /// Legacy vcpu_info slots in shared_info (XEN_LEGACY_MAX_VCPUS).
    public static let legacyVCPUs = 32
    public static let vcpuInfo = 0x000
    public static let evtchnPending = 0x800
    public static let evtchnMask = 0xa00
    public static let wcVersion = 0xc00
    public static let wcSec = 0xc04
    public static let wcNsec = 0xc08
    public static let wcSecHi = 0xc0c
    public static let archMaxPFN = 0xc10
    public static let archPFNToMFNFrameListList = 0xc18
    public static let archNMIReason = 0xc20
    public static let archP2MCR3 = 0xc28
    public static let archP2MVaddr = 0xc30
    public static let archP2MGeneration = 0xc38

    /// Offset of the legacy vcpu_info of `vcpu`.
    public static func vcpuInfo(_ vcpu: Int) -> Int { vcpuInfo + vcpu * VCPUInfoLayout.size }

    public static let layoutFacts: [(name: String, value: Int)] = [
        ("sizeof shared_info", size), ("shared_info.vcpu_info", vcpuInfo),
        ("shared_info.evtchn_pending", evtchnPending), ("shared_info.evtchn_mask", evtchnMask),
        ("shared_info.wc_version", wcVersion), ("shared_info.wc_sec", wcSec), ("shared_info.wc_nsec", wcNsec),
        ("shared_info.wc_sec_hi", wcSecHi), ("shared_info.arch.max_pfn", archMaxPFN),
        ("shared_info.arch.pfn_to_mfn_frame_list_list", archPFNToMFNFrameListList),
        ("shared_info.arch.nmi_reason", archNMIReason), ("shared_info.arch.p2m_cr3", archP2MCR3),
        ("shared_info.arch.p2m_vaddr", archP2MVaddr), ("shared_info.arch.p2m_generation", archP2MGeneration),
    ]
}

/// `struct vcpu_info` (64 bytes).
public enum VCPUInfoLayout: WireLayout {
    public static let size = 0x40
    public static let upcallPending = 0x00
    public static let upcallMask = 0x01
    public static let pendingSel = 0x08
    public static let cr2 = 0x10
    public static let time = 0x20

    public static let layoutFacts: [(name: String, value: Int)] = [
        ("sizeof vcpu_info", size), ("vcpu_info.evtchn_upcall_pending", upcallPending),
        ("vcpu_info.evtchn_upcall_mask", upcallMask), ("vcpu_info.evtchn_pending_sel", pendingSel),
        ("vcpu_info.arch.cr2", cr2), ("vcpu_info.time", time),
    ]
}

/// `struct vcpu_time_info` (32 bytes): the guest computes system time from the TSC with it.
public struct VCPUTimeInfo: Sendable, Equatable, WireLayout {
    public static let size = 0x20
    public static let flagTSCStable: UInt8 = 1 << 0
    public static let flagGuestStable: UInt8 = 1 << 1

    public var version: UInt32 = 0
    public var tscTimestamp: UInt64 = 0
    public var systemTime: UInt64 = 0
    public var tscToSystemMul: UInt32 = 0
    public var tscShift: Int8 = 0
    public var flags: UInt8 = 0

    public init(version: UInt32 = 0, tscTimestamp: UInt64 = 0, systemTime: UInt64 = 0, tscToSystemMul: UInt32 = 0, tscShift: Int8 = 0, flags: UInt8 = 0) {
        self.version = version
        self.tscTimestamp = tscTimestamp
        self.systemTime = systemTime
        self.tscToSystemMul = tscToSystemMul
        self.tscShift = tscShift
        self.flags = flags
    }

    public enum Offset {
        public static let version = 0x00, tscTimestamp = 0x08, systemTime = 0x10, tscToSystemMul = 0x18,
                          tscShift = 0x1c, flags = 0x1d
    }

    public static let layoutFacts: [(name: String, value: Int)] = [
        ("sizeof vcpu_time_info", size), ("vcpu_time_info.version", Offset.version),
        ("vcpu_time_info.tsc_timestamp", Offset.tscTimestamp), ("vcpu_time_info.system_time", Offset.systemTime),
        ("vcpu_time_info.tsc_to_system_mul", Offset.tscToSystemMul), ("vcpu_time_info.tsc_shift", Offset.tscShift),
        ("vcpu_time_info.flags", Offset.flags),
    ]

    /// The guest's formula (Linux pvclock, Xen time.c): nanoseconds since system time 0 at `tsc`.
    public func systemTime(atTSC tsc: UInt64) -> UInt64 {
        var delta = tsc &- tscTimestamp
        if tscShift >= 0 { delta <<= UInt64(tscShift) } else { delta >>= UInt64(-Int(tscShift)) }
        let product = delta.multipliedFullWidth(by: UInt64(tscToSystemMul))
        let scaled = (product.high << 32) | (product.low >> 32)
        return systemTime &+ scaled
    }

    /// Scale factors for a TSC running at `tscHz` (Xen's `compute_time_scale`): the largest
    /// shift such that the multiplier fits in 32 bits.
    public static func scale(forTSCHz tscHz: UInt64) -> (mul: UInt32, shift: Int8) {
        guard tscHz > 0 else { return (0, 0) }
        // We want ns = (tsc << shift) * mul / 2^32, i.e. mul = 1e9 * 2^32 / (tscHz << shift).
        var shift: Int8 = 0
        var hz = tscHz
        let target: UInt64 = 1_000_000_000
        // Normalise so that target / hz lies in [0.5, 1): then mul = target * 2^32 / hz fits 32 bits.
        while hz > target * 2 && shift > -31 { hz >>= 1; shift -= 1 }
        while hz <= target && shift < 31 { hz <<= 1; shift += 1 }
        let mul = (target << 32) / hz
        return (UInt32(truncatingIfNeeded: min(mul, UInt64(UInt32.max))), shift)
    }

    public func encode() -> [UInt8] {
        var writer = ByteWriter(size: Self.size)
        writer.set(version, at: Offset.version)
        writer.set(tscTimestamp, at: Offset.tscTimestamp)
        writer.set(systemTime, at: Offset.systemTime)
        writer.set(tscToSystemMul, at: Offset.tscToSystemMul)
        writer.set(UInt8(bitPattern: tscShift), at: Offset.tscShift)
        writer.set(flags, at: Offset.flags)
        return writer.bytes
    }

    public init(decoding bytes: [UInt8]) throws(ByteReader.OutOfBounds) {
        let reader = ByteReader(bytes)
        version = try reader.u32(Offset.version)
        tscTimestamp = try reader.u64(Offset.tscTimestamp)
        systemTime = try reader.u64(Offset.systemTime)
        tscToSystemMul = try reader.u32(Offset.tscToSystemMul)
        tscShift = Int8(bitPattern: try reader.u8(Offset.tscShift))
        flags = try reader.u8(Offset.flags)
    }
}

/// `struct vcpu_runstate_info` (public/vcpu.h).
public enum RunstateLayout: WireLayout {
    public static let size = 0x30
    public static let state = 0x00
    public static let stateEntryTime = 0x08
    public static let time = 0x10
    public static let running: Int32 = 0, runnable: Int32 = 1, blocked: Int32 = 2, offline: Int32 = 3
    /// XEN_RUNSTATE_UPDATE: set in state_entry_time while the area is being written.
    public static let updateFlag: UInt64 = 1 << 63
    public static let layoutFacts: [(name: String, value: Int)] = [
        ("sizeof vcpu_runstate_info", size), ("vcpu_runstate_info.state", state),
        ("vcpu_runstate_info.state_entry_time", stateEntryTime), ("vcpu_runstate_info.time", time),
    ]
}

/// `struct xencons_interface` (public/io/console.h).
public enum ConsoleRingLayout: WireLayout {
    public static let size = 0xc10
    public static let input = 0x000
    public static let inputSize = 1024
    public static let output = 0x400
    public static let outputSize = 2048
    public static let inCons = 0xc00
    public static let inProd = 0xc04
    public static let outCons = 0xc08
    public static let outProd = 0xc0c
    public static let layoutFacts: [(name: String, value: Int)] = [
        ("sizeof xencons_interface", size), ("xencons_interface.in", input), ("xencons_interface.out", output),
        ("xencons_interface.in_cons", inCons), ("xencons_interface.in_prod", inProd),
        ("xencons_interface.out_cons", outCons), ("xencons_interface.out_prod", outProd),
    ]
}

/// `struct xenstore_domain_interface` (public/io/xs_wire.h).
public enum XenStoreRingLayout: WireLayout {
    public static let size = 0x81c
    public static let request = 0x000
    public static let response = 0x400
    public static let ringSize = 1024
    public static let reqCons = 0x800
    public static let reqProd = 0x804
    public static let rspCons = 0x808
    public static let rspProd = 0x80c
    public static let serverFeatures = 0x810
    public static let connection = 0x814
    public static let error = 0x818
    public static let layoutFacts: [(name: String, value: Int)] = [
        ("sizeof xenstore_domain_interface", size), ("xenstore_domain_interface.req", request),
        ("xenstore_domain_interface.rsp", response), ("xenstore_domain_interface.req_cons", reqCons),
        ("xenstore_domain_interface.req_prod", reqProd), ("xenstore_domain_interface.rsp_cons", rspCons),
        ("xenstore_domain_interface.rsp_prod", rspProd), ("xenstore_domain_interface.server_features", serverFeatures),
        ("xenstore_domain_interface.connection", connection), ("xenstore_domain_interface.error", error),
    ]
}
