import GuestMemory
import XenABI

/// A domain's grant table, version 1 (public/grant_table.h, xen/common/grant_table.c).
/// The entries themselves live in Xen-owned frames the guest maps (setup_table gives
/// their machine frames); this keeps what Xen's "active grant table" keeps: who holds
/// each granted frame, so that GTF_reading/GTF_writing are cleared when the last
/// mapping goes.
public struct GrantTableState: Sendable {
    /// Frames the guest asked for with setup_table (0 until then).
    public var frames = 0
    public var version: UInt32 = 1
    struct Active: Sendable { var readers = 0; var writers = 0 }
    var active: [UInt32: Active] = [:]
    public init() {}
}

/// A granted frame a backend in the hypervisor process holds: read and write it through
/// `address`, release it with `Domain.releaseGrant`.
public struct GrantMapping: Sendable, Equatable {
    public let granter: UInt16
    public let reference: UInt32
    public let frame: FrameNumber
    public let readOnly: Bool
    public var address: GuestPhysicalAddress { GuestPhysicalAddress(frame.rawValue << 12) }
}

/// Why a grant could not be used, as a GNTST_* status.
public struct GrantError: Error, Sendable, Equatable, CustomStringConvertible {
    public let status: GrantStatus
    public let reason: String
    public init(_ status: GrantStatus, _ reason: String) { self.status = status; self.reason = reason }
    public var description: String { "\(reason) (GNTST \(status.rawValue))" }
}

extension Domain {
    /// Largest number of grant frames a domain can set up.
    public var maximumGrantFrames: Int { layout.grantFrameCount }

    /// Machine address of v1 entry `reference`, if the table set up so far holds it.
    func grantEntryAddress(_ reference: UInt32, frames: Int) -> GuestPhysicalAddress? {
        guard reference < UInt32(frames * GrantFlags.entriesPerFrame) else { return nil }
        return GuestPhysicalAddress(layout.grantFrames.rawValue + UInt64(reference) * UInt64(GrantFlags.entrySize))
    }

    /// Takes a hold on grant `reference` of this domain for `grantee` (a backend in the
    /// hypervisor process counts as domain 0), setting GTF_reading/GTF_writing as Xen's
    /// _set_status_v1 does. The granted frame must be this domain's RAM.
    ///
    /// The entry's bits and the hold counts change together under the domain's lock (Xen
    /// holds the active entry's lock for both), so a concurrent `releaseGrant` of another
    /// holder cannot clear a bit this hold relies on.
    public func acquireGrant(_ reference: UInt32, for grantee: UInt16, readOnly: Bool) throws(GrantError) -> GrantMapping {
        var work = PendingMachineWork()
        let environment = mmuEnvironment
        return try state.withLock { state throws(GrantError) -> GrantMapping in
            guard let entry = grantEntryAddress(reference, frames: state.grants.frames) else {
                throw GrantError(.badGrantReference, "d\(id): grant reference \(reference) is beyond the table")
            }
            // The guest may change the entry meanwhile; like Xen, give up after five tries.
            for _ in 0..<5 {
                guard let raw = try? memory.atomicLoad64(at: entry) else { throw GrantError(.generalError, "grant table unreachable") }
                let flags = UInt16(truncatingIfNeeded: raw)
                let domid = UInt16(truncatingIfNeeded: raw >> 16)
                let frame = FrameNumber(raw >> 32)
                // Xen's _set_status_v1 fails both with GNTST_general_error.
                guard flags & GrantFlags.typeMask == GrantFlags.permitAccess, domid == grantee else {
                    throw GrantError(.generalError, "d\(id): grant \(reference) does not permit access by d\(grantee)")
                }
                guard readOnly || flags & GrantFlags.readonly == 0 else {
                    throw GrantError(.generalError, "d\(id): grant \(reference) is read-only")
                }
                guard layout.isRAM(frame) else { throw GrantError(.badPage, "d\(id): grant \(reference) names \(frame), not its own") }
                // A writable hold keeps the frame a writable page: it cannot become a page
                // table or descriptor page while someone may write it.
                if !readOnly {
                    do throws(XenError) { try state.getPageType(frame, .writable, environment, &work) } catch {
                        // As gnttab_copy_claim_buf when get_page_type(PGT_writable_page) fails.
                        throw GrantError(.generalError, "d\(id): grant \(reference) names a frame in use as a page table or descriptor page")
                    }
                }
                let wanted = flags | GrantFlags.reading | (readOnly ? 0 : GrantFlags.writing)
                let updated = (raw & ~0xffff) | UInt64(wanted)
                guard let found = try? memory.atomicCompareExchange(at: entry, expected: raw, desired: updated) else {
                    if !readOnly { state.putPageType(frame, environment, &work) }
                    throw GrantError(.generalError, "grant table unreachable")
                }
                if found != raw {
                    if !readOnly { state.putPageType(frame, environment, &work) }
                    continue
                }
                var active = state.grants.active[reference] ?? GrantTableState.Active()
                if readOnly { active.readers += 1 } else { active.writers += 1 }
                state.grants.active[reference] = active
                return GrantMapping(granter: id, reference: reference, frame: frame, readOnly: readOnly)
            }
            throw GrantError(.generalError, "d\(id): grant \(reference) is unstable")
        }
    }

    /// Drops a hold taken by `acquireGrant`; the last one clears GTF_reading/writing.
    public func releaseGrant(_ mapping: GrantMapping) {
        var work = PendingMachineWork()
        let environment = mmuEnvironment
        state.withLock { state in
            guard let entry = grantEntryAddress(mapping.reference, frames: state.grants.frames),
                  var active = state.grants.active[mapping.reference] else { return }
            if !mapping.readOnly { state.putPageType(mapping.frame, environment, &work) }
            if mapping.readOnly { active.readers = max(0, active.readers - 1) } else { active.writers = max(0, active.writers - 1) }
            state.grants.active[mapping.reference] = active.readers + active.writers == 0 ? nil : active
            var clear: UInt16 = 0
            if active.writers == 0 { clear |= GrantFlags.writing }
            if active.readers + active.writers == 0 { clear |= GrantFlags.reading }
            if clear != 0 { _ = try? memory.atomicFetchAnd(~UInt64(clear), at: entry) }
        }
    }
}
