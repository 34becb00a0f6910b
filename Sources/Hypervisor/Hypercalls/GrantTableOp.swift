import GuestMemory
import XenABI

/// grant_table_op (public/grant_table.h), version 1: the guest's own table
/// (setup_table, query_size, set/get_version) and copies. A guest mapping another
/// domain's grant into its own page tables (map_grant_ref) would need the other VM's
/// memory in this VM; Domus's backends run in the hypervisor process instead, so that
/// op is not offered yet.
enum GrantTableOps {
    static func grantTableOp(_ call: inout HypercallInvocation) throws(XenError) -> HypercallOutcome {
        let command = call.argument(0)
        let list = call.argument(1)
        let count = call.argument(2)
        switch command {
        case GrantTableOp.setupTable:
            guard count == 1 else { throw .EINVAL }
            let request = ByteReader(try call.copyIn(list, count: 24))
            guard let dom = try? request.u16(0), let frames = try? request.u32(4), let frameList = try? request.u64(16) else {
                throw .EFAULT
            }
            var status = GrantStatus.okay
            if !(dom == DomainID.`self` || dom == call.domain.id) {
                status = .permissionDenied
            } else if frames > UInt32(call.domain.maximumGrantFrames) {
                status = .generalError
            } else {
                var listing = ByteWriter(size: Int(frames) * 8)
                for index in 0..<Int(frames) {
                    listing.set(call.domain.layout.grantFrames.frame.rawValue + UInt64(index), at: index * 8)
                }
                try call.copyOut(listing.bytes, to: frameList)
                call.domain.state.withLock { $0.grants.frames = max($0.grants.frames, Int(frames)) }
            }
            try call.copyOut(u16(UInt16(bitPattern: status.rawValue)), to: list + 8)
            return .value(0)
        case GrantTableOp.querySize:
            guard count == 1 else { throw .EINVAL }
            let request = ByteReader(try call.copyIn(list, count: 16))
            guard let dom = try? request.u16(0) else { throw .EFAULT }
            var reply = ByteWriter(size: 12)
            if dom == DomainID.`self` || dom == call.domain.id {
                reply.set(UInt32(call.domain.state.withLock { $0.grants.frames }), at: 0)
                reply.set(UInt32(call.domain.maximumGrantFrames), at: 4)
                reply.set(UInt16(bitPattern: GrantStatus.okay.rawValue), at: 8)
            } else {
                reply.set(UInt16(bitPattern: GrantStatus.permissionDenied.rawValue), at: 8)
            }
            try call.copyOut(reply.bytes, to: list + 4)
            return .value(0)
        case GrantTableOp.setVersion:
            let request = ByteReader(try call.copyIn(list, count: 4))
            guard let version = try? request.u32(0) else { throw .EFAULT }
            // Only the v1 layout is implemented; report it so the guest uses it.
            try call.copyOut(EventChannelOps.u32(1), to: list)
            return version == 1 ? .value(0) : .value(XenError.EOPNOTSUPP.hypercallReturnValue)
        case GrantTableOp.getVersion:
            let request = ByteReader(try call.copyIn(list, count: 8))
            guard let dom = try? request.u16(0) else { throw .EFAULT }
            guard dom == DomainID.`self` || dom == call.domain.id else { throw .EPERM }
            try call.copyOut(EventChannelOps.u32(1), to: list + 4)
            return .value(0)
        case GrantTableOp.copy:
            for index in 0..<count {
                let entry = list &+ index &* 40
                let status = copy(try call.copyIn(entry, count: 40), call)
                try call.copyOut(u16(UInt16(bitPattern: status.rawValue)), to: entry + 36)
            }
            return .value(0)
        default:
            call.domain.log.log(.debug, "\(call.vcpu.name): grant_table_op \(command) is not implemented: -ENOSYS")
            throw .ENOSYS
        }
    }

    static func u16(_ value: UInt16) -> [UInt8] { [UInt8(truncatingIfNeeded: value), UInt8(truncatingIfNeeded: value >> 8)] }

    /// One GNTTABOP_copy entry (struct gnttab_copy, 40 bytes).
    static func copy(_ bytes: [UInt8], _ call: HypercallInvocation) -> GrantStatus {
        let reader = ByteReader(bytes)
        guard let sourceValue = try? reader.u64(0), let sourceDom = try? reader.u16(8), let sourceOffset = try? reader.u16(10),
              let destinationValue = try? reader.u64(16), let destinationDom = try? reader.u16(24),
              let destinationOffset = try? reader.u16(26), let length = try? reader.u16(32), let flags = try? reader.u16(34) else {
            return .generalError
        }
        guard Int(sourceOffset) + Int(length) <= 4096, Int(destinationOffset) + Int(length) <= 4096 else { return .badCopyArgument }
        var held: [(Domain, GrantMapping)] = []
        defer { for (domain, mapping) in held { domain.releaseGrant(mapping) } }
        // The statuses of gnttab_copy_lock_domain, acquire_grant_for_copy and get_paged_frame.
        func resolve(_ value: UInt64, _ dom: UInt16, isGrant: Bool, write: Bool) -> Result<(Domain, FrameNumber), GrantError> {
            guard let owner = call.domain.domain(dom) else { return .failure(GrantError(.badDomain, "no domain \(dom)")) }
            if isGrant {
                do throws(GrantError) {
                    let mapping = try owner.acquireGrant(UInt32(truncatingIfNeeded: value), for: call.domain.id, readOnly: !write)
                    held.append((owner, mapping))
                    return .success((owner, mapping.frame))
                } catch {
                    return .failure(error)
                }
            }
            guard owner === call.domain else { return .failure(GrantError(.permissionDenied, "d\(dom)'s frame without a grant")) }
            guard call.domain.layout.isRAM(FrameNumber(value)) else { return .failure(GrantError(.badPage, "frame \(value) is not RAM")) }
            return .success((call.domain, FrameNumber(value)))
        }
        let sourceDomain: Domain, sourceFrame: FrameNumber, destinationDomain: Domain, destinationFrame: FrameNumber
        switch resolve(sourceValue, sourceDom, isGrant: flags & GrantCopyFlags.sourceGrantReference != 0, write: false) {
        case let .success(resolved): (sourceDomain, sourceFrame) = resolved
        case let .failure(error): return error.status
        }
        switch resolve(destinationValue, destinationDom, isGrant: flags & GrantCopyFlags.destinationGrantReference != 0, write: true) {
        case let .success(resolved): (destinationDomain, destinationFrame) = resolved
        case let .failure(error): return error.status
        }
        guard let data = try? sourceDomain.memory.readBytes(at: GuestPhysicalAddress(sourceFrame.rawValue << 12 | UInt64(sourceOffset)), count: Int(length)) else {
            return .badPage
        }
        let target = GuestPhysicalAddress(destinationFrame.rawValue << 12 | UInt64(destinationOffset))
        if flags & GrantCopyFlags.destinationGrantReference != 0 {
            return (try? destinationDomain.memory.writeBytes(data, at: target)) != nil ? .okay : .badPage
        }
        // The caller's own frame: written only while it is an ordinary writable page
        // (gnttab_copy_claim_buf: GNTST_general_error when it cannot take that type).
        var typed = false
        do throws(XenError) {
            try MMUOps.writablePage(destinationFrame, call) { _ throws(XenError) in
                typed = true
                do { try destinationDomain.memory.writeBytes(data, at: target) } catch { throw .EFAULT }
            }
        } catch {
            return typed ? .badPage : .generalError
        }
        return .okay
    }
}
