import GuestMemory
import XenABI

/// The PV MMU hypercalls (xen/arch/x86/mm.c): mmu_update, update_va_mapping and
/// mmuext_op. Every page-table change is validated against the frame types first.
enum MMUOps {
    // MARK: mmu_update

    static func mmuUpdate(_ call: inout HypercallInvocation) throws(XenError) -> HypercallOutcome {
        try batch(call, entrySize: MMUUpdate.size) { bytes, index throws(XenError) in
            guard let request = try? MMUUpdate(decoding: bytes) else { throw .EFAULT }
            if call.domain.trace.load(ordering: .relaxed) {
                call.domain.log.log(.trace, "\(call.vcpu.name):   mmu_update[\(index)] ptr \(hex(request.ptr)) val \(hex(request.val))")
            }
            try apply(request, call)
        }
        return .value(0)
    }

    /// The loop mmu_update and mmuext_op share: arguments (list, count, done pointer,
    /// domain); entries are copied in and handled one by one until one fails; the
    /// number done is written to the done pointer (if any) and the failure returned.
    static func batch(_ call: HypercallInvocation, entrySize: Int,
                      _ handle: (_ bytes: [UInt8], _ index: UInt64) throws(XenError) -> Void) throws(XenError) {
        let list = call.argument(0)
        let count = call.argument(1)
        let doneAddress = call.argument(2)
        try checkOwnDomain(call.argument(3), call)
        var done: UInt64 = 0
        var failure: XenError?
        while done < count {
            do throws(XenError) {
                try handle(try call.copyIn(list &+ done &* UInt64(entrySize), count: entrySize), done)
            } catch {
                failure = error
                break
            }
            done += 1
        }
        if doneAddress != 0 {
            var writer = ByteWriter(size: 4)
            writer.set(UInt32(truncatingIfNeeded: done), at: 0)
            try call.copyOut(writer.bytes, to: doneAddress)
        }
        if let failure { throw failure }
    }

    static func checkOwnDomain(_ domid: UInt64, _ call: HypercallInvocation) throws(XenError) {
        let id = UInt16(truncatingIfNeeded: domid)
        guard id == DomainID.`self` || id == call.domain.id else { throw .ESRCH }
    }

    static func apply(_ request: MMUUpdate, _ call: HypercallInvocation) throws(XenError) {
        let domain = call.domain
        let address = GuestPhysicalAddress(request.ptr & ~7)
        switch request.command {
        case MMUUpdateCommand.normalPTUpdate, MMUUpdateCommand.ptUpdatePreserveAD:
            try updateEntry(at: address, to: request.val, preserveAD: request.command == MMUUpdateCommand.ptUpdatePreserveAD,
                            call: call, requireL1: false)
        case MMUUpdateCommand.machphysUpdate:
            let frame = address.frame
            guard domain.layout.isRAM(frame) else { throw .EINVAL }
            do {
                try domain.memory.write(request.val, at: GuestPhysicalAddress(domain.layout.machineToPhys.rawValue + frame.rawValue * 8))
            } catch { throw .EFAULT }
        default:
            throw .EINVAL
        }
    }

    static func updateEntry(at address: GuestPhysicalAddress, to value: UInt64, preserveAD: Bool,
                            call: HypercallInvocation, requireL1: Bool) throws(XenError) {
        try PageTableUpdates.update(call.vcpu, at: address, to: value, preserveAD: preserveAD, requireL1: requireL1)
    }

    // MARK: update_va_mapping

    static func updateVAMapping(_ call: inout HypercallInvocation) throws(XenError) -> HypercallOutcome {
        let virtual = GuestVirtualAddress(call.argument(0))
        let value = call.argument(1)
        let flags = call.argument(2)
        guard GuestPageWalker.isGuestAccessible(virtual), let root = call.vcpu.kernelTable else { throw .EINVAL }
        let walker = GuestPageWalker(memory: call.domain.memory, root: root)
        guard let entry = walker.l1EntryAddress(for: virtual) else { throw .EINVAL }
        try updateEntry(at: entry, to: value, preserveAD: false, call: call, requireL1: true)
        try flush(type: flags & UVMF.flushTypeMask, target: flags & ~UVMF.flushTypeMask, address: virtual.rawValue, call)
        return .value(0)
    }

    /// Applies a TLB flush of `type` (none, all, one address) to the vCPUs `target`
    /// names: 0 = this vCPU, UVMF_ALL = all, else a guest pointer to a vCPU bitmap.
    static func flush(type: UInt64, target: UInt64, address: UInt64, _ call: HypercallInvocation) throws(XenError) {
        guard type != UVMF.none else { return }
        var targets: [VCPU] = []
        switch target {
        case UVMF.local: targets = [call.vcpu]
        case UVMF.all: targets = call.domain.vcpus
        default:
            let mask = try call.copyIn(target, count: 8)
            let bits = mask.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << UInt64(8 * $1.offset) }
            targets = call.domain.vcpus.filter { $0.id < 64 && bits & (1 << UInt64($0.id)) != 0 }
        }
        for vcpu in targets where vcpu === call.vcpu {
            if type == UVMF.invlpg { vcpu.pendingWork.invalidations.append(address) } else { vcpu.pendingWork.flushAll = true }
        }
        call.vcpu.flushRemotely(targets.filter { $0 !== call.vcpu })
    }

    // MARK: mmuext_op

    static func mmuextOp(_ call: inout HypercallInvocation) throws(XenError) -> HypercallOutcome {
        try batch(call, entrySize: MMUExtOp.size) { bytes, index throws(XenError) in
            guard let op = try? MMUExtOp(decoding: bytes) else { throw .EFAULT }
            if call.domain.trace.load(ordering: .relaxed) {
                call.domain.log.log(.trace, "\(call.vcpu.name):   mmuext_op[\(index)] cmd \(op.cmd) arg1 \(hex(op.arg1)) arg2 \(hex(op.arg2))")
            }
            try extendedOp(op, call)
        }
        return .value(0)
    }

    static func extendedOp(_ op: MMUExtOp, _ call: HypercallInvocation) throws(XenError) {
        let domain = call.domain
        let vcpu = call.vcpu
        let frame = FrameNumber(op.arg1)
        var work = PendingMachineWork()
        defer { vcpu.addWork(work) }
        let env = domain.mmuEnvironment
        switch op.cmd {
        case MMUExtCommand.pinL1Table, MMUExtCommand.pinL2Table, MMUExtCommand.pinL3Table, MMUExtCommand.pinL4Table:
            guard domain.layout.isRAM(frame) else { throw .EINVAL }
            try domain.state.withLock { state throws(XenError) in
                guard state.pages[frame]?.pinned == false else { throw .EINVAL }
                try state.getPageType(frame, .table(level: Int(op.cmd) + 1), env, &work)
                state.pages.update(frame) { $0.pinned = true }
            }
        case MMUExtCommand.unpinTable:
            guard domain.layout.isRAM(frame) else { throw .EINVAL }
            try domain.state.withLock { state throws(XenError) in
                guard state.pages[frame]?.pinned == true else { throw .EINVAL }
                state.pages.update(frame) { $0.pinned = false }
                state.putPageType(frame, env, &work)
            }
        case MMUExtCommand.newBaseptr:
            guard domain.layout.isRAM(frame) else { throw .EINVAL }
            try domain.state.withLock { state throws(XenError) in
                try state.getPageType(frame, .l4, env, &work)
                if let old = vcpu.kernelTable { state.putPageType(old, env, &work) }
            }
            vcpu.kernelTable = frame
        case MMUExtCommand.newUserBaseptr:
            if op.arg1 == 0 {
                if let old = vcpu.userTable { domain.state.withLock { $0.putPageType(old, env, &work) } }
                vcpu.userTable = nil
                return
            }
            guard domain.layout.isRAM(frame) else { throw .EINVAL }
            try domain.state.withLock { state throws(XenError) in
                try state.getPageType(frame, .l4, env, &work)
                if let old = vcpu.userTable { state.putPageType(old, env, &work) }
            }
            vcpu.userTable = frame
        case MMUExtCommand.tlbFlushLocal:
            work.flushAll = true
        case MMUExtCommand.invlpgLocal:
            work.invalidations.append(op.arg1)
        case MMUExtCommand.tlbFlushMulti:
            try flush(type: UVMF.tlbFlush, target: op.arg2, address: 0, call)
        case MMUExtCommand.invlpgMulti:
            try flush(type: UVMF.invlpg, target: op.arg2, address: op.arg1, call)
        case MMUExtCommand.tlbFlushAll:
            try flush(type: UVMF.tlbFlush, target: UVMF.all, address: 0, call)
        case MMUExtCommand.invlpgAll:
            try flush(type: UVMF.invlpg, target: UVMF.all, address: op.arg1, call)
        case MMUExtCommand.flushCacheGlobal:
            throw .EACCES
        case MMUExtCommand.setLDT:
            try DescriptorTables.setLDT(base: op.arg1, entries: op.arg2, call)
        case MMUExtCommand.clearPage:
            try writablePage(frame, call) { base throws(XenError) in
                do { try domain.memory.zero(at: base, count: pageSize) } catch { throw .EFAULT }
            }
        case MMUExtCommand.copyPage:
            let source = FrameNumber(op.arg2)
            guard domain.layout.isRAM(source), let from = source.address else { throw .EINVAL }
            try writablePage(frame, call) { base throws(XenError) in
                do { try domain.memory.copy(from: from, to: base, count: pageSize) } catch { throw .EFAULT }
            }
        case MMUExtCommand.markSuper, MMUExtCommand.unmarkSuper:
            throw .EOPNOTSUPP
        default:
            domain.log.log(.debug, "\(vcpu.name): mmuext_op \(op.cmd) is not implemented: -ENOSYS")
            throw .ENOSYS
        }
    }

    /// Runs `body` on a RAM frame while holding a writable type reference to it.
    static func writablePage(_ frame: FrameNumber, _ call: HypercallInvocation,
                             _ body: (GuestPhysicalAddress) throws(XenError) -> Void) throws(XenError) {
        let domain = call.domain
        guard domain.layout.isRAM(frame), let base = frame.address else { throw .EINVAL }
        var work = PendingMachineWork()
        defer { call.vcpu.addWork(work) }
        try domain.state.withLock { state throws(XenError) in
            try state.getPageType(frame, .writable, domain.mmuEnvironment, &work)
            defer { state.putPageType(frame, domain.mmuEnvironment, &work) }
            try body(base)
        }
    }
}
