import GuestMemory
import KVM
import Ring0Core

/// A vCPU's flight recorder (`CoreLayout.vcpuRecorder`): a ring of the last ways into
/// and out of the in-VM core (written by ring0/entry.S) and of the host (written here),
/// with the rip, cr3 and rsp of each. A vCPU that dies inside the VM — a triple fault
/// leaves no registers behind on AMD, and the host saw nothing since its last exit —
/// then still says what it did last. Kept only where ring 0 runs natively: it costs a
/// dozen instructions per core entry, which a host that emulates ring 0 would feel.
struct FlightRecorder {
    let memory: GuestMemory
    /// Guest-physical address of the vCPU's core block.
    let block: UInt64

    init(memory: GuestMemory, area: HypervisorArea, vcpu: Int) {
        self.memory = memory
        self.block = area.coreBlock(vcpu).rawValue
    }

    private func field(_ offset: Int) -> GuestPhysicalAddress { GuestPhysicalAddress(block + UInt64(offset)) }

    var isEnabled: Bool { ((try? memory.read(UInt64.self, at: field(CoreLayout.vcpuRecorderEnabled))) ?? 0) != 0 }

    func enable(_ on: Bool) {
        try? memory.write(UInt64(on ? 1 : 0), at: field(CoreLayout.vcpuRecorderEnabled))
    }

    /// Appends one event (the vCPU is out of the VM: the host owns the ring then).
    func record(_ what: UInt64, rip: UInt64, cr3: UInt64, rsp: UInt64) {
        guard let count: UInt64 = try? memory.read(at: field(CoreLayout.vcpuRecorderCount)) else { return }
        let slot = Int(count % UInt64(CoreLayout.recorderSlots))
        let base = CoreLayout.vcpuRecorder + slot * CoreLayout.recorderEntrySize
        for (index, word) in [what, rip, cr3, rsp].enumerated() {
            try? memory.write(word, at: field(base + index * 8))
        }
        try? memory.write(count &+ 1, at: field(CoreLayout.vcpuRecorderCount))
    }

    /// A host exit's code in the "what" word.
    static func exitCode(_ exit: VMExit) -> UInt64 {
        switch exit {
        case .io: 1
        case .interrupted: 2
        case .shutdown: 3
        default: 0
        }
    }

    /// The recorded events, oldest first, one line each.
    func lines() -> [String] {
        guard let count: UInt64 = try? memory.read(at: field(CoreLayout.vcpuRecorderCount)), count > 0 else { return [] }
        let slots = UInt64(CoreLayout.recorderSlots)
        var lines: [String] = []
        for sequence in (count > slots ? count - slots : 0)..<count {
            let base = CoreLayout.vcpuRecorder + Int(sequence % slots) * CoreLayout.recorderEntrySize
            let words = (0..<4).map { (try? memory.read(UInt64.self, at: field(base + $0 * 8))) ?? 0 }
            lines.append("    #\(sequence) \(Self.describe(words[0]))  rip \(hex(words[1]))  cr3 \(hex(words[2]))  rsp \(hex(words[3]))")
        }
        return lines
    }

    static func describe(_ what: UInt64) -> String {
        let kinds = ["hypercall page", "syscall", "page fault", "invalid opcode"]
        let kind = Int(what & 0xff) < kinds.count ? kinds[Int(what & 0xff)] : "kind \(what & 0xff)"
        switch what & 0xff00 {
        case CoreLayout.recordCoreEntry: return "core entry (\(kind))"
        case CoreLayout.recordCoreReturn: return "core return (\(kind))"
        case CoreLayout.recordCoreDefer: return "core defers (\(kind))"
        case CoreLayout.recordHostResume: return "host resumes"
        case CoreLayout.recordHostExit:
            let exits = ["exit", "exit (stub I/O)", "exit (signal)", "exit (shutdown)"]
            let code = Int(what >> 16)
            return code < exits.count ? exits[code] : "exit \(code)"
        default: return "event \(hex(what))"
        }
    }
}
