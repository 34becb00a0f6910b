import GuestMemory
import XenABI

/// vcpu_op (public/vcpu.h) and set_timer_op.
enum VCPUOps {
    static func vcpuOp(_ call: inout HypercallInvocation) throws(XenError) -> HypercallOutcome {
        let command = call.argument(0)
        let target = call.argument(1) & 0xffff_ffff   // unsigned int vcpuid
        let argument = call.argument(2)
        guard target < UInt64(call.domain.vcpus.count) else { throw .ENOENT }
        let vcpu = call.domain.vcpus[Int(target)]
        switch command {
        case VCPUOp.isUp:
            return .value(vcpu.online ? 1 : 0)
        case VCPUOp.down:
            // The vCPU stops until brought up again. A domain whose every vCPU is down
            // can never run again (Linux does this when it halts with interrupts off).
            vcpu.online = false
            if call.domain.vcpus.allSatisfy({ !$0.online }) {
                call.domain.crash("every vCPU is down: the guest halted with events disabled (VCPUOP_down by \(call.vcpu.name))")
                return .stop
            }
            if vcpu === call.vcpu { return .value(0) }
            vcpu.wake()
            return .value(0)
        case VCPUOp.initialise:
            try VCPUInitialise.initialise(vcpu, from: argument, call)
            return .value(0)
        case VCPUOp.up:
            guard vcpu.initialised else { throw .EINVAL }
            vcpu.online = true
            vcpu.wake()
            return .value(0)
        case VCPUOp.registerRunstateMemoryArea:
            let bytes = try call.copyIn(argument, count: 8)
            let address = ByteReader(bytes)
            guard let area = try? address.u64(0) else { throw .EFAULT }
            vcpu.runstateArea = area == 0 ? nil : GuestVirtualAddress(area)
            if vcpu === call.vcpu { writeRunstate(call.vcpu) }
            return .value(0)
        case VCPUOp.registerVCPUTimeMemoryArea:
            let bytes = try call.copyIn(argument, count: 8)
            guard let area = try? ByteReader(bytes).u64(0) else { throw .EFAULT }
            vcpu.timeMemoryArea = area == 0 ? nil : GuestVirtualAddress(area)
            copyTimeInfo(vcpu)
            return .value(0)
        case VCPUOp.getRunstateInfo:
            try call.copyOut(runstateBytes(vcpu), to: argument)
            return .value(0)
        case VCPUOp.registerVCPUInfo:
            guard let request = try? RegisterVCPUInfo(decoding: try call.copyIn(argument, count: RegisterVCPUInfo.size)) else {
                throw .EFAULT
            }
            try registerVCPUInfo(request, for: vcpu, call: call)
            return .value(0)
        case VCPUOp.setPeriodicTimer:
            let bytes = try call.copyIn(argument, count: 8)
            guard let period = try? ByteReader(bytes).u64(0) else { throw .EFAULT }
            guard period >= 1_000_000 else { throw .EINVAL }
            vcpu.timer.withLock { $0.period = period; $0.periodicNext = call.domain.systemTime() &+ period }
            vcpu.wake()
            return .value(0)
        case VCPUOp.stopPeriodicTimer:
            vcpu.timer.withLock { $0.period = nil; $0.periodicNext = nil }
            return .value(0)
        case VCPUOp.setSingleshotTimer:
            guard let request = try? SingleshotTimer(decoding: try call.copyIn(argument, count: SingleshotTimer.size)) else {
                throw .EFAULT
            }
            if request.flags & VCPUOp.singleshotFuture != 0 && request.timeoutAbsNs < call.domain.systemTime() {
                throw .ETIME
            }
            vcpu.timer.withLock { $0.deadline = request.timeoutAbsNs }
            if vcpu !== call.vcpu { vcpu.wake() }
            return .value(0)
        case VCPUOp.stopSingleshotTimer:
            vcpu.timer.withLock { $0.deadline = nil }
            return .value(0)
        default:
            call.domain.log.log(.debug, "\(call.vcpu.name): vcpu_op \(command) is not implemented: -ENOSYS")
            throw .ENOSYS
        }
    }

    /// set_timer_op(timeout): an absolute system time; 0 stops the timer.
    static func setTimerOp(_ call: inout HypercallInvocation) throws(XenError) -> HypercallOutcome {
        let timeout = call.argument(0)
        call.vcpu.timer.withLock { $0.deadline = timeout == 0 ? nil : timeout }
        return .value(0)
    }

    /// VCPUOP_register_vcpu_info: move vcpu_info into a guest page (map_vcpu_info).
    static func registerVCPUInfo(_ request: RegisterVCPUInfo, for vcpu: VCPU, call: HypercallInvocation) throws(XenError) {
        let domain = call.domain
        guard !vcpu.vcpuInfoRegistered else { throw .EINVAL }
        guard request.offset <= UInt32(pageSize) - UInt32(VCPUInfoLayout.size), request.offset % 8 == 0 else { throw .EINVAL }
        let frame = FrameNumber(request.mfn)
        guard domain.layout.isRAM(frame), let base = frame.address else { throw .EINVAL }
        // The page stays a writable page for as long as it holds vcpu_info.
        var work = PendingMachineWork()
        try domain.state.withLock { state throws(XenError) in
            try state.getPageType(frame, .writable, domain.mmuEnvironment, &work)
        }
        call.vcpu.addWork(work)
        let newAddress = GuestPhysicalAddress(base.rawValue + UInt64(request.offset))
        do {
            let current = try domain.memory.readBytes(at: vcpu.vcpuInfoAddress, count: VCPUInfoLayout.size)
            try domain.memory.writeBytes(current, at: newAddress)
        } catch {
            throw .EFAULT
        }
        vcpu.vcpuInfoAddress = newAddress
        vcpu.vcpuInfoRegistered = true
        // Anything pending must be seen at the new place: raise the upcall again.
        if vcpu.upcallPending() { domain.markUpcallPending(vcpu) }
    }

    /// The runstate info (vcpu_runstate_info): running since boot.
    static func runstateBytes(_ vcpu: VCPU) -> [UInt8] {
        var writer = ByteWriter(size: RunstateLayout.size)
        let now = vcpu.domain.systemTime()
        writer.set(UInt32(bitPattern: RunstateLayout.running), at: RunstateLayout.state)
        writer.set(now, at: RunstateLayout.stateEntryTime)
        writer.set(vcpu.runningTime(now: now), at: RunstateLayout.time)
        writer.set(vcpu.blockedTime, at: RunstateLayout.time + 16)
        return writer.bytes
    }

    /// Updates the guest's runstate area, if it registered one (update_runstate_area).
    /// Copies the vCPU's vcpu_time_info from its vcpu_info into the area the guest
    /// registered, with the version protocol (odd while it changes), as Xen's
    /// update_guest_time_info does. An area the guest unmapped is skipped, as on Xen.
    static func copyTimeInfo(_ vcpu: VCPU) {
        guard let area = vcpu.timeMemoryArea, let root = vcpu.kernelTable,
              let record = try? vcpu.domain.memory.readBytes(at: GuestPhysicalAddress(vcpu.vcpuInfoAddress.rawValue + UInt64(VCPUInfoLayout.time)),
                                                             count: VCPUTimeInfo.size) else { return }
        let walker = GuestPageWalker(memory: vcpu.domain.memory, root: root)
        let stable = (try? ByteReader(record).u32(VCPUTimeInfo.Offset.version)) ?? 0
        var writer = ByteWriter(size: 4)
        writer.set(stable | 1, at: 0)
        guard (try? walker.write(writer.bytes, to: area)) != nil else { return }
        try? walker.write(Array(record.dropFirst(4)), to: GuestVirtualAddress(area.rawValue &+ 4))
        writer.set(stable & ~1, at: 0)
        try? walker.write(writer.bytes, to: area)
    }

    static func writeRunstate(_ vcpu: VCPU) {
        guard let area = vcpu.runstateArea, let root = vcpu.kernelTable else { return }
        let walker = GuestPageWalker(memory: vcpu.domain.memory, root: root)
        try? walker.write(runstateBytes(vcpu), to: area)
    }
}
