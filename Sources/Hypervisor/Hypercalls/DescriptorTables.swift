import GuestMemory
import XenABI

/// set_gdt and update_descriptor (xen/arch/x86/pv/descriptor-tables.c). GDT frames
/// become descriptor pages, which are never writable; the machine layer copies the
/// checked descriptors into the hardware GDT.
enum DescriptorTables {
    static func setGDT(_ call: inout HypercallInvocation) throws(XenError) -> HypercallOutcome {
        let list = call.argument(0)
        let entries = call.argument(1)
        guard entries <= UInt64(FlatSelector.maxGuestGDTEntries) else { throw .EINVAL }
        let frameCount = Int((entries + 511) / 512)
        var frames: [FrameNumber] = []
        if frameCount > 0 {
            let raw = try call.copyIn(list, count: frameCount * 8)
            let reader = ByteReader(raw)
            for index in 0..<frameCount {
                guard let value = try? reader.u64(index * 8) else { throw .EFAULT }
                frames.append(FrameNumber(value))
            }
        }
        let vcpu = call.vcpu
        try replaceDescriptorFrames(vcpu.gdtFrames, with: frames, call)
        vcpu.gdtFrames = frames
        vcpu.gdtEntries = Int(entries)
        vcpu.gdtChanged.store(true, ordering: .releasing)
        return .value(0)
    }

    /// Makes `frames` descriptor pages (checking their descriptors) and releases `old`,
    /// all or nothing: what set_gdt and MMUEXT_SET_LDT share.
    static func replaceDescriptorFrames(_ old: [FrameNumber], with frames: [FrameNumber],
                                        _ call: HypercallInvocation) throws(XenError) {
        let domain = call.domain
        var work = PendingMachineWork()
        defer { call.vcpu.addWork(work) }
        try domain.state.withLock { state throws(XenError) in
            var taken: [FrameNumber] = []
            for frame in frames {
                do throws(XenError) {
                    guard domain.layout.isRAM(frame) else { throw .EINVAL }
                    try state.getPageType(frame, .segmentDescriptor, domain.mmuEnvironment, &work)
                } catch {
                    for done in taken { state.putPageType(done, domain.mmuEnvironment, &work) }
                    throw error
                }
                taken.append(frame)
            }
            for frame in old { state.putPageType(frame, domain.mmuEnvironment, &work) }
        }
    }

    /// Most LDT entries (8192 descriptors, 16 pages).
    static let maximumLDTEntries: UInt64 = 8192

    /// MMUEXT_SET_LDT(linear address, entries): the LDT's pages become descriptor pages
    /// (checked, never writable) while in use; the machine layer copies the descriptors
    /// into the hardware LDT (Xen maps them lazily; the effect for the guest is the same).
    static func setLDT(base: UInt64, entries: UInt64, _ call: HypercallInvocation) throws(XenError) {
        let vcpu = call.vcpu
        guard base % pageSize == 0, entries <= maximumLDTEntries,
              entries == 0 || GuestPageWalker.isGuestAccessible(.init(base)) && GuestPageWalker.isGuestAccessible(.init(base &+ entries * 8 &- 1)),
              base.addingReportingOverflow(entries * 8).overflow == false else { throw .EINVAL }
        var frames: [FrameNumber] = []
        if entries > 0 {
            let walker = try call.guestMemory()
            let pages = (entries * 8 + pageSize - 1) / pageSize
            for page in 0..<pages {
                let physical = try walker.translate(GuestVirtualAddress(base + page * pageSize), write: false)
                frames.append(physical.frame)
            }
        }
        try replaceDescriptorFrames(vcpu.ldtFrames, with: frames, call)
        vcpu.ldtBase = base
        vcpu.ldtEntries = Int(entries)
        vcpu.ldtFrames = frames
        vcpu.ldtChanged.store(true, ordering: .releasing)
    }

    /// update_descriptor(maddr, descriptor): the only way to change a descriptor page.
    static func updateDescriptor(_ call: inout HypercallInvocation) throws(XenError) -> HypercallOutcome {
        let address = call.argument(0)
        let descriptor = call.argument(1)
        guard address % 8 == 0 else { throw .EINVAL }
        let frame = GuestPhysicalAddress(address).frame
        let domain = call.domain
        guard domain.layout.isRAM(frame), DescriptorRules.isAllowed(descriptor) else { throw .EINVAL }
        var work = PendingMachineWork()
        try domain.state.withLock { state throws(XenError) in
            let info = state.pages[frame] ?? PageInfo()
            if info.typeCount > 0 && info.type == .segmentDescriptor {
                try? domain.memory.write(descriptor, at: GuestPhysicalAddress(address))
            } else {
                try state.getPageType(frame, .writable, domain.mmuEnvironment, &work)
                try? domain.memory.write(descriptor, at: GuestPhysicalAddress(address))
                state.putPageType(frame, domain.mmuEnvironment, &work)
            }
        }
        call.vcpu.addWork(work)
        for vcpu in domain.vcpus where vcpu.gdtFrames.contains(frame) {
            vcpu.gdtChanged.store(true, ordering: .releasing)
            if vcpu !== call.vcpu { vcpu.wake() }
        }
        for vcpu in domain.vcpus where vcpu.ldtFrames.contains(frame) {
            vcpu.ldtChanged.store(true, ordering: .releasing)
            if vcpu !== call.vcpu { vcpu.wake() }
        }
        return .value(0)
    }
}
