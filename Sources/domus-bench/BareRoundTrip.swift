import GuestMemory
import KVM

/// The peer of the null-hypercall benchmark: the least a KVM program can do for a
/// round trip from ring-3 guest code to the host and back on hosts where ring-3 port
/// I/O faults. A tiny VM (identity-mapped, no hypervisor) runs `out` in a loop at ring
/// 3; each #GP goes through an IST stub that leaves with `out`; the host steps over the
/// faulting instruction by rewriting the saved RIP, and the stub's `iretq` returns.
/// The guest times the loop with rdtsc.
enum BareRoundTrip {
    struct Result {
        let calls: Int
        let ticks: UInt64
        let nanosecondsPerCall: Double
    }

    enum Failure: Error, CustomStringConvertible {
        case kvm(KVMError)
        case memory(GuestMemoryError)
        case unexpected(String)
        var description: String {
            switch self {
            case let .kvm(error): return "KVM: \(error)"
            case let .memory(error): return "memory: \(error)"
            case let .unexpected(message): return message
            }
        }
    }

    /// Runs `calls` round trips in a VM of `ramBytes`; `beforeFirstRun` is called just
    /// before the first KVM_RUN (the create-to-running peer times up to there).
    static func run(calls: Int, ramBytes: UInt64 = 4 << 20, beforeFirstRun: () -> Void = {}) throws(Failure) -> Result {
        do {
            return try measure(calls: calls, ramBytes: max(ramBytes, 4 << 20), beforeFirstRun: beforeFirstRun)
        } catch let error as KVMError {
            throw .kvm(error)
        } catch let error as GuestMemoryError {
            throw .memory(error)
        } catch let error as Failure {
            throw error
        } catch {
            throw .unexpected("\(error)")
        }
    }

    private static func measure(calls: Int, ramBytes size: UInt64, beforeFirstRun: () -> Void) throws -> Result {
        let memory = try GuestMemory(ramBytes: size)
        // Page tables: 0x1000 L4, 0x2000 L3, 0x3000 L2 with two 2 MiB user pages.
        try memory.write(UInt64(0x2007), at: GuestPhysicalAddress(0x1000))
        try memory.write(UInt64(0x3007), at: GuestPhysicalAddress(0x2000))
        try memory.write(UInt64(0x0000_0087), at: GuestPhysicalAddress(0x3000))
        try memory.write(UInt64(0x0020_0087), at: GuestPhysicalAddress(0x3008))
        // GDT at 0x4000: ring-0 code 0x08, data 0x10, ring-3 data 0x23, code 0x2b, TSS 0x30.
        let gdt: [UInt64] = [0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff, 0, 0x00cf_f300_0000_ffff, 0x00af_fb00_0000_ffff,
                             0x0000_8b00_6000_0067, 0]
        for (index, entry) in gdt.enumerated() { try memory.write(entry, at: GuestPhysicalAddress(0x4000 + UInt64(index) * 8)) }
        // TSS at 0x6000: IST1 = 0x9000; no I/O bitmap.
        try memory.write(UInt64(0x9000), at: GuestPhysicalAddress(0x6000 + 0x24))
        try memory.write(UInt16(0x68), at: GuestPhysicalAddress(0x6000 + 0x66))
        // IDT at 0x5000 (vector 13 only): stub at 0x7000 = out %al,$13; add $8,%rsp (the
        // error code); iretq.
        let stub: UInt64 = 0x7000
        try memory.writeBytes([0xe6, 13, 0x48, 0x83, 0xc4, 0x08, 0x48, 0xcf], at: GuestPhysicalAddress(stub))
        let gate = (stub & 0xffff) | 0x08 << 16 | 1 << 32 | 0x8e << 40 | ((stub >> 16) & 0xffff) << 48
        try memory.write(gate, at: GuestPhysicalAddress(0x5000 + 13 * 16))
        // Code at 0x10000.
        let code: [UInt8] = [
            0x0f, 0x31, 0x48, 0xc1, 0xe2, 0x20, 0x48, 0x09, 0xd0, 0x49, 0x89, 0xc4,   // rdtsc; r12 = tsc
            0x48, 0xc7, 0xc1] + le32(UInt32(calls)) + [                               // mov $calls, %rcx
            0xe6, 0x58,                                                                // 1: out %al, $0x58
            0x48, 0xff, 0xc9, 0x75, 0xf9,                                              // dec %rcx; jnz 1b
            0x0f, 0x31, 0x48, 0xc1, 0xe2, 0x20, 0x48, 0x09, 0xd0, 0x49, 0x89, 0xc5,   // rdtsc; r13 = tsc
            0xf4,                                                                      // hlt: #GP, the end
        ]
        try memory.writeBytes(code, at: GuestPhysicalAddress(0x10000))

        let kvm = try KVMSystem()
        let vm = try kvm.createVirtualMachine()
        guard let ram = memory.ram else { throw Failure.unexpected("no RAM region") }
        try vm.setMemoryRegion(slot: 0, guestPhysical: 0, size: size, hostAddress: ram.hostAddress)
        let cpu = try vm.createVirtualCPU(id: 0)
        var sregs = try cpu.getSpecialRegisters()
        sregs.cr0 = 0x8001_0033; sregs.cr4 = 0x620; sregs.efer = 0xd01; sregs.cr3 = 0x1000
        sregs.cs = Segment(limit: 0xffff_ffff, selector: 0x2b, type: 11, present: true, dpl: 3, s: true, l: true, g: true)
        let data = Segment(limit: 0xffff_ffff, selector: 0x23, type: 3, present: true, dpl: 3, db: true, s: true, g: true)
        sregs.ss = data; sregs.ds = data; sregs.es = data; sregs.fs = data; sregs.gs = data
        sregs.gdt = DescriptorTable(base: 0x4000, limit: 0x3f)
        sregs.idt = DescriptorTable(base: 0x5000, limit: 0xfff)
        sregs.tr = Segment(base: 0x6000, limit: 0x67, selector: 0x30, type: 11, present: true)
        try cpu.setSpecialRegisters(sregs)
        var regs = Registers()
        regs.rip = 0x10000; regs.rsp = 0x20000; regs.rflags = 0x202
        try cpu.setRegisters(regs)

        let frameRIP = GuestPhysicalAddress(0x9000 - 40)
        beforeFirstRun()
        while true {
            switch cpu.runOnce() {
            case .io(port: 13, _, _, _):
                let rip: UInt64 = try memory.read(at: frameRIP)
                let opcode: UInt8 = try memory.read(at: GuestPhysicalAddress(rip))
                if opcode == 0xf4 {
                    let final = try cpu.getRegisters()
                    let khz = try cpu.tscKHz()
                    let ticks = final.r13 &- final.r12
                    return Result(calls: calls, ticks: ticks,
                                  nanosecondsPerCall: Double(ticks) / Double(khz) * 1e6 / Double(calls))
                }
                try memory.write(rip + 2, at: frameRIP)
            case .interrupted:
                continue
            case let exit:
                throw Failure.unexpected("unexpected exit \(exit)")
            }
        }
    }

    static func le32(_ value: UInt32) -> [UInt8] {
        (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
    }
}
