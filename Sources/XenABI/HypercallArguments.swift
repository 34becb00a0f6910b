/// Argument structs that hypercalls read from and write to guest memory, with
/// explicit little-endian codecs (public/xen.h, callback.h, vcpu.h, memory.h, sched.h).

/// `struct trap_info` (arch-x86/xen.h): one entry of set_trap_table.
public struct TrapInfo: Sendable, Equatable, WireLayout {
    public static let size = 16
    public var vector: UInt8
    /// Bits 0–1: DPL for software interrupts; bit 2: mask events on entry.
    public var flags: UInt8
    public var cs: UInt16
    public var address: UInt64
    public init(vector: UInt8, flags: UInt8, cs: UInt16, address: UInt64) {
        self.vector = vector; self.flags = flags; self.cs = cs; self.address = address
    }
    public var dpl: UInt8 { flags & 3 }
    public var masksEvents: Bool { flags & 4 != 0 }
    public init(decoding bytes: [UInt8]) throws(ByteReader.OutOfBounds) {
        let reader = ByteReader(bytes)
        vector = try reader.u8(0); flags = try reader.u8(1); cs = try reader.u16(2); address = try reader.u64(8)
    }
    public func encode() -> [UInt8] {
        var writer = ByteWriter(size: Self.size)
        writer.set(vector, at: 0); writer.set(flags, at: 1); writer.set(cs, at: 2); writer.set(address, at: 8)
        return writer.bytes
    }
    public static let layoutFacts: [(name: String, value: Int)] = [
        ("sizeof trap_info", size), ("trap_info.vector", 0), ("trap_info.flags", 1), ("trap_info.cs", 2), ("trap_info.address", 8),
    ]
}

/// `struct iret_context` (arch-x86/xen-x86_64.h): what the guest pushes before HYPERVISOR_iret.
public struct IretContext: Sendable, Equatable, WireLayout {
    public static let size = 0x48
    public var rax: UInt64, r11: UInt64, rcx: UInt64, flags: UInt64, rip: UInt64, cs: UInt64, rflags: UInt64, rsp: UInt64, ss: UInt64
    public init(rax: UInt64 = 0, r11: UInt64 = 0, rcx: UInt64 = 0, flags: UInt64 = 0, rip: UInt64 = 0, cs: UInt64 = 0, rflags: UInt64 = 0, rsp: UInt64 = 0, ss: UInt64 = 0) {
        self.rax = rax; self.r11 = r11; self.rcx = rcx; self.flags = flags; self.rip = rip
        self.cs = cs; self.rflags = rflags; self.rsp = rsp; self.ss = ss
    }
    public init(decoding bytes: [UInt8]) throws(ByteReader.OutOfBounds) {
        let reader = ByteReader(bytes)
        rax = try reader.u64(0x00); r11 = try reader.u64(0x08); rcx = try reader.u64(0x10); flags = try reader.u64(0x18)
        rip = try reader.u64(0x20); cs = try reader.u64(0x28); rflags = try reader.u64(0x30); rsp = try reader.u64(0x38)
        ss = try reader.u64(0x40)
    }
    public func encode() -> [UInt8] {
        var writer = ByteWriter(size: Self.size)
        for (offset, value) in [(0x00, rax), (0x08, r11), (0x10, rcx), (0x18, flags), (0x20, rip), (0x28, cs), (0x30, rflags), (0x38, rsp), (0x40, ss)] {
            writer.set(value, at: offset)
        }
        return writer.bytes
    }
    public static let layoutFacts: [(name: String, value: Int)] = [
        ("sizeof iret_context", size), ("iret_context.rax", 0x00), ("iret_context.r11", 0x08), ("iret_context.rcx", 0x10),
        ("iret_context.flags", 0x18), ("iret_context.rip", 0x20), ("iret_context.cs", 0x28), ("iret_context.rflags", 0x30),
        ("iret_context.rsp", 0x38), ("iret_context.ss", 0x40),
    ]
}

/// `struct mmu_update` (public/xen.h): {ptr | command in the low 2 bits, val}.
public struct MMUUpdate: Sendable, Equatable, WireLayout {
    public static let size = 16
    public var ptr: UInt64
    public var val: UInt64
    public init(ptr: UInt64, val: UInt64) { self.ptr = ptr; self.val = val }
    public var command: UInt64 { ptr & 3 }
    public init(decoding bytes: [UInt8]) throws(ByteReader.OutOfBounds) {
        let reader = ByteReader(bytes)
        ptr = try reader.u64(0); val = try reader.u64(8)
    }
    public func encode() -> [UInt8] {
        var writer = ByteWriter(size: Self.size)
        writer.set(ptr, at: 0); writer.set(val, at: 8)
        return writer.bytes
    }
    public static let layoutFacts: [(name: String, value: Int)] = [("sizeof mmu_update", size), ("mmu_update.ptr", 0), ("mmu_update.val", 8)]
}

/// `struct mmuext_op` (public/xen.h).
public struct MMUExtOp: Sendable, Equatable, WireLayout {
    public static let size = 24
    public var cmd: UInt32
    /// mfn or linear_addr, depending on cmd.
    public var arg1: UInt64
    /// nr_ents, vcpumask pointer or src_mfn, depending on cmd.
    public var arg2: UInt64
    public init(cmd: UInt32, arg1: UInt64 = 0, arg2: UInt64 = 0) { self.cmd = cmd; self.arg1 = arg1; self.arg2 = arg2 }
    public init(decoding bytes: [UInt8]) throws(ByteReader.OutOfBounds) {
        let reader = ByteReader(bytes)
        cmd = try reader.u32(0); arg1 = try reader.u64(8); arg2 = try reader.u64(16)
    }
    public func encode() -> [UInt8] {
        var writer = ByteWriter(size: Self.size)
        writer.set(cmd, at: 0); writer.set(arg1, at: 8); writer.set(arg2, at: 16)
        return writer.bytes
    }
    public static let layoutFacts: [(name: String, value: Int)] = [
        ("sizeof mmuext_op", size), ("mmuext_op.cmd", 0), ("mmuext_op.arg1", 8), ("mmuext_op.arg2", 16),
    ]
}

/// `struct multicall_entry` (public/xen.h): {op, result, args[6]}.
public struct MulticallEntry: Sendable, Equatable, WireLayout {
    public static let size = 0x40
    public static let resultOffset = 8
    public var op: UInt64
    public var result: UInt64
    public var args: [UInt64]
    public init(op: UInt64, result: UInt64 = 0, args: [UInt64]) {
        self.op = op; self.result = result
        self.args = Array((args + [UInt64](repeating: 0, count: 6)).prefix(6))
    }
    public init(decoding bytes: [UInt8]) throws(ByteReader.OutOfBounds) {
        let reader = ByteReader(bytes)
        op = try reader.u64(0); result = try reader.u64(8)
        var args: [UInt64] = []
        for index in 0..<6 { args.append(try reader.u64(0x10 + 8 * index)) }
        self.args = args
    }
    public func encode() -> [UInt8] {
        var writer = ByteWriter(size: Self.size)
        writer.set(op, at: 0); writer.set(result, at: 8)
        for (index, arg) in args.prefix(6).enumerated() { writer.set(arg, at: 0x10 + 8 * index) }
        return writer.bytes
    }
    public static let layoutFacts: [(name: String, value: Int)] = [
        ("sizeof multicall_entry", size), ("multicall_entry.op", 0), ("multicall_entry.result", 8), ("multicall_entry.args", 0x10),
    ]
}

/// `struct callback_register` (public/callback.h).
public struct CallbackRegister: Sendable, Equatable, WireLayout {
    public static let size = 16
    public var type: UInt16
    public var flags: UInt16
    public var address: UInt64
    public init(type: UInt16, flags: UInt16, address: UInt64) { self.type = type; self.flags = flags; self.address = address }
    public init(decoding bytes: [UInt8]) throws(ByteReader.OutOfBounds) {
        let reader = ByteReader(bytes)
        type = try reader.u16(0); flags = try reader.u16(2); address = try reader.u64(8)
    }
    public func encode() -> [UInt8] {
        var writer = ByteWriter(size: Self.size)
        writer.set(type, at: 0); writer.set(flags, at: 2); writer.set(address, at: 8)
        return writer.bytes
    }
    public static let layoutFacts: [(name: String, value: Int)] = [
        ("sizeof callback_register", size), ("callback_register.type", 0), ("callback_register.flags", 2),
        ("callback_register.address", 8), ("sizeof callback_unregister", 4),
    ]
}

/// `struct vcpu_register_vcpu_info` (public/vcpu.h).
public struct RegisterVCPUInfo: Sendable, Equatable, WireLayout {
    public static let size = 16
    public var mfn: UInt64
    public var offset: UInt32
    public init(mfn: UInt64, offset: UInt32) { self.mfn = mfn; self.offset = offset }
    public init(decoding bytes: [UInt8]) throws(ByteReader.OutOfBounds) {
        let reader = ByteReader(bytes)
        mfn = try reader.u64(0); offset = try reader.u32(8)
    }
    public func encode() -> [UInt8] {
        var writer = ByteWriter(size: Self.size)
        writer.set(mfn, at: 0); writer.set(offset, at: 8)
        return writer.bytes
    }
    public static let layoutFacts: [(name: String, value: Int)] = [
        ("sizeof vcpu_register_vcpu_info", size), ("vcpu_register_vcpu_info.mfn", 0), ("vcpu_register_vcpu_info.offset", 8),
    ]
}

/// `struct vcpu_set_singleshot_timer` (public/vcpu.h).
public struct SingleshotTimer: Sendable, Equatable, WireLayout {
    public static let size = 16
    public var timeoutAbsNs: UInt64
    public var flags: UInt32
    public init(timeoutAbsNs: UInt64, flags: UInt32) { self.timeoutAbsNs = timeoutAbsNs; self.flags = flags }
    public init(decoding bytes: [UInt8]) throws(ByteReader.OutOfBounds) {
        let reader = ByteReader(bytes)
        timeoutAbsNs = try reader.u64(0); flags = try reader.u32(8)
    }
    public func encode() -> [UInt8] {
        var writer = ByteWriter(size: Self.size)
        writer.set(timeoutAbsNs, at: 0); writer.set(flags, at: 8)
        return writer.bytes
    }
    public static let layoutFacts: [(name: String, value: Int)] = [
        ("sizeof vcpu_set_singleshot_timer", size), ("vcpu_set_singleshot_timer.timeout_abs_ns", 0),
        ("vcpu_set_singleshot_timer.flags", 8), ("sizeof vcpu_register_runstate_memory_area", 8),
    ]
}

/// `struct xen_machphys_mapping` (public/memory.h).
public struct MachphysMapping: Sendable, Equatable, WireLayout {
    public static let size = 24
    public var virtualStart: UInt64, virtualEnd: UInt64, maxMFN: UInt64
    public init(virtualStart: UInt64, virtualEnd: UInt64, maxMFN: UInt64) {
        self.virtualStart = virtualStart; self.virtualEnd = virtualEnd; self.maxMFN = maxMFN
    }
    public func encode() -> [UInt8] {
        var writer = ByteWriter(size: Self.size)
        writer.set(virtualStart, at: 0); writer.set(virtualEnd, at: 8); writer.set(maxMFN, at: 16)
        return writer.bytes
    }
    public static let layoutFacts: [(name: String, value: Int)] = [
        ("sizeof xen_machphys_mapping", size), ("xen_machphys_mapping.v_start", 0),
        ("xen_machphys_mapping.v_end", 8), ("xen_machphys_mapping.max_mfn", 16),
    ]
}

/// `struct xen_memory_map` (public/memory.h): {nr_entries (in: capacity, out: count), buffer handle}.
public enum MemoryMapLayout: WireLayout {
    public static let size = 16
    public static let nrEntries = 0
    public static let buffer = 8
    /// One e820 entry: {u64 addr, u64 size, u32 type}, packed to 20 bytes as Linux's boot_e820_entry.
    public static let e820EntrySize = 20
    public static let e820RAM: UInt32 = 1
    public static let layoutFacts: [(name: String, value: Int)] = [
        ("sizeof xen_memory_map", size), ("xen_memory_map.nr_entries", nrEntries), ("xen_memory_map.buffer", buffer),
    ]
}

/// `struct xen_memory_reservation` (public/memory.h).
public struct MemoryReservation: Sendable, Equatable, WireLayout {
    public static let size = 32
    public var extentStart: UInt64
    public var nrExtents: UInt64
    public var extentOrder: UInt32
    public var memFlags: UInt32
    public var domid: UInt16
    public init(extentStart: UInt64, nrExtents: UInt64, extentOrder: UInt32, memFlags: UInt32, domid: UInt16) {
        self.extentStart = extentStart; self.nrExtents = nrExtents; self.extentOrder = extentOrder
        self.memFlags = memFlags; self.domid = domid
    }
    public init(decoding bytes: [UInt8]) throws(ByteReader.OutOfBounds) {
        let reader = ByteReader(bytes)
        extentStart = try reader.u64(0); nrExtents = try reader.u64(8); extentOrder = try reader.u32(16)
        memFlags = try reader.u32(20); domid = try reader.u16(24)
    }
    public func encode() -> [UInt8] {
        var writer = ByteWriter(size: Self.size)
        writer.set(extentStart, at: 0); writer.set(nrExtents, at: 8); writer.set(extentOrder, at: 16)
        writer.set(memFlags, at: 20); writer.set(domid, at: 24)
        return writer.bytes
    }
    public static let layoutFacts: [(name: String, value: Int)] = [
        ("sizeof xen_memory_reservation", size), ("xen_memory_reservation.extent_start", 0),
        ("xen_memory_reservation.nr_extents", 8), ("xen_memory_reservation.extent_order", 16),
        ("xen_memory_reservation.mem_flags", 20), ("xen_memory_reservation.domid", 24),
    ]
}

/// `struct sched_poll` (public/sched.h).
public struct SchedPoll: Sendable, Equatable, WireLayout {
    public static let size = 24
    public var ports: UInt64
    public var nrPorts: UInt32
    public var timeout: UInt64
    public init(ports: UInt64, nrPorts: UInt32, timeout: UInt64) { self.ports = ports; self.nrPorts = nrPorts; self.timeout = timeout }
    public init(decoding bytes: [UInt8]) throws(ByteReader.OutOfBounds) {
        let reader = ByteReader(bytes)
        ports = try reader.u64(0); nrPorts = try reader.u32(8); timeout = try reader.u64(16)
    }
    public static let layoutFacts: [(name: String, value: Int)] = [
        ("sizeof sched_poll", size), ("sched_poll.ports", 0), ("sched_poll.nr_ports", 8), ("sched_poll.timeout", 16),
        ("sizeof sched_shutdown", 4),
    ]
}
