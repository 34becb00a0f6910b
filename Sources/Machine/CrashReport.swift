import GuestMemory
import Hypervisor
import XenABI

/// What a crashed vCPU was doing: registers, mode, page tables and the top of its
/// stack, with the words that look like kernel text addresses marked (PV kernels are
/// usually built without frame pointers, so this is what a stack trace can be).
enum CrashReport {
    static func describe(vcpu: VCPU, reason: String, context: GuestContext) -> String {
        func h(_ value: UInt64) -> String {
            let digits = String(value, radix: 16)
            return "0x" + String(repeating: "0", count: max(0, 16 - digits.count)) + digits
        }
        var lines = ["\(vcpu.name) crashed: \(reason)"]
        lines.append("  mode \(vcpu.mode == .kernel ? "kernel" : "user")  kernel L4 \(vcpu.kernelTable.map { String(describing: $0) } ?? "none")  user L4 \(vcpu.userTable.map { String(describing: $0) } ?? "none")")
        lines.append("  rip \(h(context.rip))  rsp \(h(context.rsp))  rflags \(h(context.rflags))  cs \(h(UInt64(context.cs)))  ss \(h(UInt64(context.ss)))")
        lines.append("  rax \(h(context.rax))  rbx \(h(context.rbx))  rcx \(h(context.rcx))  rdx \(h(context.rdx))")
        lines.append("  rsi \(h(context.rsi))  rdi \(h(context.rdi))  rbp \(h(context.rbp))  r8  \(h(context.r8))")
        lines.append("  r9  \(h(context.r9))  r10 \(h(context.r10))  r11 \(h(context.r11))  r12 \(h(context.r12))")
        lines.append("  r13 \(h(context.r13))  r14 \(h(context.r14))  r15 \(h(context.r15))")
        lines.append("  fs base \(h(context.fsBase))  gs base \(h(context.gsBase))  upcall mask \(vcpu.upcallMask() ? 1 : 0)  pending \(vcpu.upcallPending() ? 1 : 0)")
        if let root = vcpu.activeTable {
            let walker = GuestPageWalker(memory: vcpu.domain.memory, root: root)
            var stack: [String] = []
            var candidates: [String] = []
            for index in 0..<32 {
                let address = context.rsp &+ UInt64(index * 8)
                guard let word: UInt64 = try? walker.read(at: GuestVirtualAddress(address)) else { break }
                stack.append(h(word))
                if isKernelText(word, vcpu: vcpu, walker: walker) { candidates.append("    [\(h(address))] \(h(word))") }
            }
            if !stack.isEmpty {
                lines.append("  stack at \(h(context.rsp)):")
                for row in stride(from: 0, to: stack.count, by: 4) {
                    lines.append("    " + stack[row..<min(row + 4, stack.count)].joined(separator: " "))
                }
            }
            if !candidates.isEmpty {
                lines.append("  possible return addresses (mapped executable words on the stack):")
                lines += candidates
            }
        }
        return lines.joined(separator: "\n")
    }

    /// Whether `value` is a mapped, executable kernel address.
    static func isKernelText(_ value: UInt64, vcpu: VCPU, walker: GuestPageWalker) -> Bool {
        guard value >= 0xffff_ff80_0000_0000 || (value > 0x1000 && value < 0x8000_0000) else { return false }
        return (try? walker.translate(GuestVirtualAddress(value), write: false)) != nil
    }

    /// For a triple fault's report: what the frame a CR3 value names is now (its type,
    /// references and pin, whether it holds the hypervisor's slots), and whether it
    /// still maps `probe` (the RIP then). A CR3 whose table was freed and reused while
    /// loaded shows up here as a frame that is no longer an L4.
    static func describeRoot(cr3: UInt64, vcpu: VCPU, probe: UInt64) -> String {
        let domain = vcpu.domain
        let frame = PageTableEntryRules.frame(cr3)   // CR3 holds its frame as a table entry does
        guard domain.layout.isRAM(frame) else { return "\(hex(cr3)) (not the domain's RAM)" }
        let info = domain.state.withLock { $0.pages[frame] }
        let kind = info.map { "\($0.type), count \($0.typeCount)\($0.pinned ? ", pinned" : "")" } ?? "no page information"
        let walker = GuestPageWalker(memory: domain.memory, root: frame)
        let mapped = (try? walker.translate(GuestVirtualAddress(probe), write: false)) != nil
        return "\(hex(cr3)) (\(frame): \(kind); \(slotState(of: frame, domain: domain)); rip \(mapped ? "mapped" : "not mapped") there)"
    }

    /// Whether the L4 `table` holds the hypervisor's slots as they should be.
    static func slotState(of table: FrameNumber, domain: Domain) -> String {
        let slots = domain.layout.hypervisorL4Entries.filter {
            $0.slot >= HypervisorVirtualLayout.firstHypervisorL4Slot && $0.slot < HypervisorVirtualLayout.endHypervisorL4Slot
        }
        guard let base = table.address else { return "no address" }
        let wrong = slots.filter { slot, entry in
            (try? domain.memory.read(UInt64.self, at: GuestPhysicalAddress(base.rawValue + UInt64(slot) * 8))) != entry
        }.count
        return wrong == 0 ? "its \(slots.count) hypervisor slots intact" : "\(wrong) of \(slots.count) hypervisor slots wrong"
    }

    /// For a triple fault's report: whether the vCPU's L4s still hold the hypervisor's
    /// slots (without them the VM's own IDT, stacks and code are unmapped, and any
    /// exception faults again).
    static func hypervisorSlots(of vcpu: VCPU) -> String {
        var parts: [String] = []
        for (name, table) in [("kernel", vcpu.kernelTable), ("user", vcpu.userTable)] {
            guard let table else { continue }
            parts.append("\(name) L4 \(table): " + slotState(of: table, domain: vcpu.domain))
        }
        return parts.isEmpty ? "no L4" : parts.joined(separator: ", ")
    }
}
