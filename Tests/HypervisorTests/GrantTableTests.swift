// grant_table_op (Hypercalls/GrantTableOp.swift) and the host-side grant holds
// (Grants/GrantTable.swift), version 1 (public/grant_table.h).

import Foundation
import GuestMemory
import Synchronization
import Testing
import XenABI

@testable import Hypervisor

/// grant_table_op calls with their argument structs in the guest buffer.
struct GrantClient {
    let test: TestDomain
    /// The op struct(s).
    static let argument = TestDomain.buffer
    /// setup_table's frame_list.
    static let frameList = TestDomain.buffer + 0x1000

    func op(_ command: UInt64, _ bytes: [UInt8], count: UInt64 = 1) throws -> Int64 {
        try test.write(bytes, at: Self.argument)
        test.call(.grantTableOp, command, Self.argument, count)
        return test.result
    }

    /// GNTTABOP_setup_table {dom, nr_frames, status, frame_list}: (result, status, frames listed).
    func setupTable(dom: UInt16 = DomainID.`self`, frames: UInt32, list: UInt64 = GrantClient.frameList,
                    count: UInt64 = 1) throws -> (result: Int64, status: Int16, frames: [UInt64]) {
        try test.write([UInt8](repeating: 0xee, count: 8 * 8), at: Self.frameList)
        let bytes = le(dom) + le(UInt16(0)) + le(frames) + le(Int16(0x7777)) + [UInt8](repeating: 0, count: 6) + le(list)
        let result = try op(GrantTableOp.setupTable, bytes, count: count)
        let status = try test.read(Int16.self, at: Self.argument + 8)
        let listed = try (0..<Int(min(frames, 8))).map { try test.read(UInt64.self, at: Self.frameList + UInt64($0) * 8) }
        return (result, status, listed)
    }

    /// GNTTABOP_query_size {dom, nr_frames, max_nr_frames, status}.
    func querySize(dom: UInt16 = DomainID.`self`, count: UInt64 = 1) throws -> (result: Int64, frames: UInt32, maximum: UInt32, status: Int16) {
        let result = try op(GrantTableOp.querySize, le(dom) + le(UInt16(0)) + le(UInt32(0xaaaa)) + le(UInt32(0xbbbb)) + le(Int16(0x7777)) + le(UInt16(0)),
                            count: count)
        let bytes = try test.read(Self.argument, count: 16)
        return (result, le(UInt32.self, bytes, at: 4), le(UInt32.self, bytes, at: 8), le(Int16.self, bytes, at: 12))
    }

    /// GNTTABOP_set_version {version}: (result, version reported back).
    func setVersion(_ version: UInt32) throws -> (result: Int64, version: UInt32) {
        let result = try op(GrantTableOp.setVersion, le(version))
        return (result, try test.read(UInt32.self, at: Self.argument))
    }

    /// GNTTABOP_get_version {dom, pad, version}.
    func getVersion(dom: UInt16 = DomainID.`self`) throws -> (result: Int64, version: UInt32) {
        let result = try op(GrantTableOp.getVersion, le(dom) + le(UInt16(0)) + le(UInt32(0x5555)))
        return (result, try test.read(UInt32.self, at: Self.argument + 4))
    }

    // MARK: The table itself

    /// Machine address of v1 entry `reference`.
    func entryAddress(_ reference: UInt32) -> GuestPhysicalAddress {
        GuestPhysicalAddress(test.layout.grantFrames.rawValue + UInt64(reference) * 8)
    }

    /// Writes grant_entry_v1 {flags, domid, frame} as the granting guest does.
    func grant(_ reference: UInt32, frame: UInt64, to domid: UInt16, flags: UInt16 = GrantFlags.permitAccess) throws {
        try test.memory.write(UInt64(flags) | UInt64(domid) << 16 | frame << 32, at: entryAddress(reference))
    }

    func flags(_ reference: UInt32) throws -> UInt16 {
        try test.memory.read(UInt16.self, at: entryAddress(reference))
    }

    func entry(_ reference: UInt32) throws -> UInt64 {
        try test.memory.read(UInt64.self, at: entryAddress(reference))
    }
}

/// One struct gnttab_copy (40 bytes).
struct GrantCopy {
    var source: UInt64
    var sourceDomain: UInt16 = DomainID.`self`
    var sourceOffset: UInt16 = 0
    var destination: UInt64
    var destinationDomain: UInt16 = DomainID.`self`
    var destinationOffset: UInt16 = 0
    var length: UInt16
    var flags: UInt16 = 0

    func encode() -> [UInt8] {
        le(source) + le(sourceDomain) + le(sourceOffset) + le(UInt32(0))
            + le(destination) + le(destinationDomain) + le(destinationOffset) + le(UInt32(0))
            + le(length) + le(flags) + le(Int16(0x7777)) + le(UInt16(0))
    }
}

extension GrantClient {
    /// GNTTABOP_copy with `copies`: (result, status of each).
    func copy(_ copies: [GrantCopy]) throws -> (result: Int64, statuses: [Int16]) {
        let result = try op(GrantTableOp.copy, copies.flatMap { $0.encode() }, count: UInt64(copies.count))
        let statuses = try copies.indices.map { try test.read(Int16.self, at: Self.argument + UInt64($0) * 40 + 36) }
        return (result, statuses)
    }
}

/// Bytes of RAM frame `pfn` of `test` at `offset`.
private func ram(_ test: TestDomain, _ pfn: UInt64, offset: Int = 0, count: Int) throws -> [UInt8] {
    try test.memory.readBytes(at: GuestPhysicalAddress(pfn << 12 + UInt64(offset)), count: count)
}

private func fill(_ test: TestDomain, _ pfn: UInt64, offset: Int = 0, _ bytes: [UInt8]) throws {
    try test.memory.writeBytes(bytes, at: GuestPhysicalAddress(pfn << 12 + UInt64(offset)))
}

private func pattern(_ count: Int, seed: UInt8) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7) &+ seed } }

@Suite("grant_table_op: the guest's own table")
struct GrantTableSetupTests {
    @Test("setup_table lists the layout's grant frames and grows the table")
    func setupTable() throws {
        let test = try TestDomain()
        let client = GrantClient(test: test)
        let first = test.layout.grantFrames.frame.rawValue
        let (result, status, frames) = try client.setupTable(frames: 2)
        #expect(result == 0)
        #expect(status == 0)
        #expect(frames == [first, first + 1])
        #expect(test.domain.state.withLock { $0.grants.frames } == 2)
        // The whole maximum, by the domain's own id.
        let all = try client.setupTable(dom: test.domain.id, frames: 4)
        #expect(all.result == 0 && all.status == 0)
        #expect(all.frames == [first, first + 1, first + 2, first + 3])
        #expect(test.domain.state.withLock { $0.grants.frames } == 4)
        // Asking for fewer later never shrinks it.
        #expect(try client.setupTable(frames: 1).status == 0)
        #expect(test.domain.state.withLock { $0.grants.frames } == 4)
    }

    @Test("setup_table with zero frames succeeds and lists nothing")
    func setupTableZero() throws {
        let test = try TestDomain()
        let (result, status, _) = try GrantClient(test: test).setupTable(frames: 0)
        #expect(result == 0 && status == 0)
        #expect(try test.read(UInt64.self, at: GrantClient.frameList) == 0xeeee_eeee_eeee_eeee)
        #expect(test.domain.state.withLock { $0.grants.frames } == 0)
    }

    @Test("setup_table beyond the maximum reports GNTST_general_error and lists nothing")
    func setupTableTooMany() throws {
        let test = try TestDomain()
        #expect(test.domain.maximumGrantFrames == 4)
        let (result, status, _) = try GrantClient(test: test).setupTable(frames: 5)
        #expect(result == 0)
        #expect(status == GrantStatus.generalError.rawValue)
        #expect(try test.read(UInt64.self, at: GrantClient.frameList) == 0xeeee_eeee_eeee_eeee)
        #expect(test.domain.state.withLock { $0.grants.frames } == 0)
    }

    @Test("setup_table for another domain reports GNTST_permission_denied")
    func setupTableOtherDomain() throws {
        let test = try TestDomain()
        let (result, status, _) = try GrantClient(test: test).setupTable(dom: 0, frames: 1)
        #expect(result == 0)
        #expect(status == GrantStatus.permissionDenied.rawValue)
        #expect(try test.read(UInt64.self, at: GrantClient.frameList) == 0xeeee_eeee_eeee_eeee)
        #expect(test.domain.state.withLock { $0.grants.frames } == 0)
    }

    @Test("setup_table takes exactly one op", arguments: [UInt64(0), 2, 100])
    func setupTableCount(count: UInt64) throws {
        let test = try TestDomain()
        let (result, status, _) = try GrantClient(test: test).setupTable(frames: 1, count: count)
        #expect(result == TestDomain.error(.EINVAL))
        #expect(status == 0x7777, "the op is left alone")
        #expect(test.domain.state.withLock { $0.grants.frames } == 0)
    }

    @Test("setup_table with an unmapped op or frame list fails with -EFAULT")
    func setupTableFaults() throws {
        let test = try TestDomain()
        test.call(.grantTableOp, GrantTableOp.setupTable, TestDomain.unmapped, 1)
        #expect(test.result == TestDomain.error(.EFAULT))
        let (result, status, _) = try GrantClient(test: test).setupTable(frames: 1, list: TestDomain.unmapped)
        #expect(result == TestDomain.error(.EFAULT))
        #expect(status == 0x7777)
        #expect(test.domain.state.withLock { $0.grants.frames } == 0)
    }

    @Test("query_size reports the frames set up and the maximum")
    func querySize() throws {
        let test = try TestDomain()
        let client = GrantClient(test: test)
        var reply = try client.querySize()
        #expect(reply.result == 0 && reply.frames == 0 && reply.maximum == 4 && reply.status == 0)
        _ = try client.setupTable(frames: 3)
        reply = try client.querySize(dom: test.domain.id)
        #expect(reply.result == 0 && reply.frames == 3 && reply.maximum == 4 && reply.status == 0)
        #expect(try client.querySize(count: 2).result == TestDomain.error(.EINVAL))
        test.call(.grantTableOp, GrantTableOp.querySize, TestDomain.unmapped, 1)
        #expect(test.result == TestDomain.error(.EFAULT))
    }

    @Test("query_size of another domain reports GNTST_permission_denied")
    func querySizeOther() throws {
        let test = try TestDomain()
        let reply = try GrantClient(test: test).querySize(dom: 0)
        #expect(reply.result == 0)
        #expect(reply.status == GrantStatus.permissionDenied.rawValue)
    }

    @Test("set_version 1 succeeds; 2 is refused with -EOPNOTSUPP and version 1 reported")
    func setVersion() throws {
        let test = try TestDomain()
        let client = GrantClient(test: test)
        #expect(try client.setVersion(1) == (0, 1))
        let two = try client.setVersion(2)
        #expect(two.result == TestDomain.error(.EOPNOTSUPP))
        #expect(two.version == 1)
        #expect(test.domain.state.withLock { $0.grants.version } == 1)
        #expect(try client.getVersion() == (0, 1))
        test.call(.grantTableOp, GrantTableOp.setVersion, TestDomain.unmapped, 1)
        #expect(test.result == TestDomain.error(.EFAULT))
    }

    @Test("get_version reports 1 for itself and refuses other domains")
    func getVersion() throws {
        let test = try TestDomain()
        let client = GrantClient(test: test)
        #expect(try client.getVersion() == (0, 1))
        #expect(try client.getVersion(dom: test.domain.id) == (0, 1))
        let other = try client.getVersion(dom: 0)
        #expect(other.result == TestDomain.error(.EPERM))
        #expect(other.version == 0x5555)
        test.call(.grantTableOp, GrantTableOp.getVersion, TestDomain.unmapped, 1)
        #expect(test.result == TestDomain.error(.EFAULT))
    }

    @Test("map_grant_ref, unmap_grant_ref and the rest are -ENOSYS, and logged",
          arguments: [GrantTableOp.mapGrantRef, GrantTableOp.unmapGrantRef, GrantTableOp.transfer, GrantTableOp.getStatusFrames, 99])
    func unimplemented(command: UInt64) throws {
        let test = try TestDomain()
        test.log.echo(to: { _ in }, level: .debug)
        test.call(.grantTableOp, command, GrantClient.argument, 1)
        #expect(test.result == TestDomain.error(.ENOSYS))
        #expect(test.log.lines().contains { $0.contains("grant_table_op \(command) is not implemented: -ENOSYS") })
    }
}

@Suite("Host-side grant holds (Domain.acquireGrant/releaseGrant)")
struct GrantHoldTests {
    /// A domain with one grant frame set up.
    func makeDomain() throws -> (TestDomain, GrantClient) {
        let test = try TestDomain()
        let client = GrantClient(test: test)
        try #require(try client.setupTable(frames: 1).status == 0)
        return (test, client)
    }

    func failure(_ body: () throws(GrantError) -> GrantMapping) -> GrantStatus? {
        do throws(GrantError) {
            _ = try body()
            return nil
        } catch {
            return error.status
        }
    }

    @Test("A read-only hold sets GTF_reading; the last release clears it")
    func readOnly() throws {
        let (test, client) = try makeDomain()
        try client.grant(7, frame: 300, to: 0)
        let mapping = try test.domain.acquireGrant(7, for: 0, readOnly: true)
        #expect(mapping == GrantMapping(granter: 1, reference: 7, frame: FrameNumber(300), readOnly: true))
        #expect(mapping.address == GuestPhysicalAddress(300 * 4096))
        #expect(try client.flags(7) == GrantFlags.permitAccess | GrantFlags.reading)
        #expect(test.pageInfo(300) == PageInfo(), "a read-only hold takes no type")
        let second = try test.domain.acquireGrant(7, for: 0, readOnly: true)
        test.domain.releaseGrant(mapping)
        #expect(try client.flags(7) == GrantFlags.permitAccess | GrantFlags.reading, "one holder is left")
        test.domain.releaseGrant(second)
        #expect(try client.entry(7) == UInt64(GrantFlags.permitAccess) | 300 << 32)
        #expect(test.domain.state.withLock { $0.grants.active.isEmpty })
    }

    @Test("A GTF_readonly grant may be held for reading")
    func readOnlyGrant() throws {
        let (test, client) = try makeDomain()
        try client.grant(3, frame: 40, to: 0, flags: GrantFlags.permitAccess | GrantFlags.readonly)
        let mapping = try test.domain.acquireGrant(3, for: 0, readOnly: true)
        #expect(try client.flags(3) == GrantFlags.permitAccess | GrantFlags.readonly | GrantFlags.reading)
        test.domain.releaseGrant(mapping)
        #expect(try client.flags(3) == GrantFlags.permitAccess | GrantFlags.readonly)
    }

    @Test("A read-write hold sets GTF_reading|GTF_writing and keeps the frame writable: it cannot be pinned meanwhile")
    func readWrite() throws {
        let (test, client) = try makeDomain()
        try client.grant(9, frame: 300, to: 0)
        let mapping = try test.domain.acquireGrant(9, for: 0, readOnly: false)
        #expect(mapping == GrantMapping(granter: 1, reference: 9, frame: FrameNumber(300), readOnly: false))
        #expect(try client.flags(9) == GrantFlags.permitAccess | GrantFlags.reading | GrantFlags.writing)
        #expect(test.pageInfo(300) == PageInfo(type: .writable, typeCount: 1, pinned: false, mappings: 0))
        #expect(try test.pin(300, level: 1) == TestDomain.error(.EINVAL))
        #expect(test.pageInfo(300).type == .writable)
        test.domain.releaseGrant(mapping)
        #expect(try client.flags(9) == GrantFlags.permitAccess)
        #expect(test.pageInfo(300).typeCount == 0)
        #expect(try test.pin(300, level: 1) == 0)
        try test.checkPageBookkeeping()
    }

    @Test("Readers and writers together: GTF_writing goes with the last writer, GTF_reading with the last holder")
    func mixedHolders() throws {
        let (test, client) = try makeDomain()
        try client.grant(2, frame: 301, to: 0)
        let reader = try test.domain.acquireGrant(2, for: 0, readOnly: true)
        let writer = try test.domain.acquireGrant(2, for: 0, readOnly: false)
        let writer2 = try test.domain.acquireGrant(2, for: 0, readOnly: false)
        #expect(test.pageInfo(301).typeCount == 2)
        test.domain.releaseGrant(writer)
        #expect(try client.flags(2) == GrantFlags.permitAccess | GrantFlags.reading | GrantFlags.writing)
        test.domain.releaseGrant(writer2)
        #expect(try client.flags(2) == GrantFlags.permitAccess | GrantFlags.reading)
        #expect(test.pageInfo(301).typeCount == 0)
        test.domain.releaseGrant(reader)
        #expect(try client.flags(2) == GrantFlags.permitAccess)
        // A release without a hold changes nothing.
        test.domain.releaseGrant(reader)
        #expect(try client.flags(2) == GrantFlags.permitAccess)
        #expect(test.pageInfo(301).typeCount == 0)
    }

    @Test("Refusals give Xen's GNTST statuses and leave the entry as it was")
    func refusals() throws {
        let (test, client) = try makeDomain()
        let domain = test.domain
        // Granted to another domain.
        try client.grant(1, frame: 300, to: 5)
        #expect(failure { () throws(GrantError) in try domain.acquireGrant(1, for: 0, readOnly: true) } == .generalError)
        #expect(try client.entry(1) == UInt64(GrantFlags.permitAccess) | 5 << 16 | 300 << 32)
        // Not a permit_access entry (invalid, transfer).
        for type: UInt16 in [0, 2, 3] {
            try client.grant(1, frame: 300, to: 0, flags: type)
            #expect(failure { () throws(GrantError) in try domain.acquireGrant(1, for: 0, readOnly: true) } == .generalError, "type \(type)")
            #expect(try client.flags(1) == type)
        }
        // GTF_readonly for a write.
        try client.grant(1, frame: 300, to: 0, flags: GrantFlags.permitAccess | GrantFlags.readonly)
        #expect(failure { () throws(GrantError) in try domain.acquireGrant(1, for: 0, readOnly: false) } == .generalError)
        #expect(try client.flags(1) == GrantFlags.permitAccess | GrantFlags.readonly)
        // A frame outside RAM: the grant frames, shared_info, far away.
        for frame in [TestDomain.ramFrames, test.layout.grantFrames.frame.rawValue, 1 << 31] {
            try client.grant(1, frame: frame, to: 0)
            #expect(failure { () throws(GrantError) in try domain.acquireGrant(1, for: 0, readOnly: true) } == .badPage, "frame \(frame)")
            #expect(try client.flags(1) == GrantFlags.permitAccess)
        }
        // A reference beyond the one frame set up.
        try client.grant(1, frame: 300, to: 0)
        #expect(failure { () throws(GrantError) in try domain.acquireGrant(512, for: 0, readOnly: true) } == .badGrantReference)
        #expect(failure { () throws(GrantError) in try domain.acquireGrant(.max, for: 0, readOnly: true) } == .badGrantReference)
        #expect(test.domain.state.withLock { $0.grants.active.isEmpty })
        #expect(test.pageInfo(300) == PageInfo())
    }

    @Test("Before setup_table no reference is valid")
    func noTable() throws {
        let test = try TestDomain()
        let client = GrantClient(test: test)
        try client.grant(0, frame: 300, to: 0)
        #expect(failure { () throws(GrantError) in try test.domain.acquireGrant(0, for: 0, readOnly: true) } == .badGrantReference)
        #expect(try client.flags(0) == GrantFlags.permitAccess)
    }

    @Test("A frame in use as a page table can be granted for reading, never for writing")
    func pageTableFrame() throws {
        let (test, client) = try makeDomain()
        #expect(try test.pin(310, level: 1) == 0)
        for frame in [TestDomain.l4Frame.rawValue, TestDomain.l1Frame.rawValue, 310] {
            let before = test.pageInfo(frame)
            try client.grant(4, frame: frame, to: 0)
            #expect(failure { () throws(GrantError) in try test.domain.acquireGrant(4, for: 0, readOnly: false) } == .generalError,
                    "frame \(frame)")
            #expect(try client.flags(4) == GrantFlags.permitAccess, "no bit is left set")
            #expect(test.pageInfo(frame) == before)
            let reader = try test.domain.acquireGrant(4, for: 0, readOnly: true)
            // A writer refused while a reader holds it leaves GTF_reading alone.
            #expect(failure { () throws(GrantError) in try test.domain.acquireGrant(4, for: 0, readOnly: false) } == .generalError)
            #expect(try client.flags(4) == GrantFlags.permitAccess | GrantFlags.reading)
            test.domain.releaseGrant(reader)
            #expect(try client.flags(4) == GrantFlags.permitAccess)
        }
        #expect(test.domain.state.withLock { $0.grants.active.isEmpty })
        try test.checkPageBookkeeping()
    }
}

/// Two domains that find each other through `Domain.peers`, as the toolstack connects them.
func connectPeers(_ domains: [TestDomain]) {
    let all = domains.map(\.domain)
    for domain in all {
        let others = all.filter { $0 !== domain }
        domain.peers.withLock { $0 = { id in others.first { $0.id == id } } }
    }
}

@Suite("GNTTABOP_copy")
struct GrantCopyTests {
    @Test("Copies between the caller's own frames, several ops in one call")
    func ownFrames() throws {
        let test = try TestDomain()
        let client = GrantClient(test: test)
        let data = pattern(300, seed: 1)
        try fill(test, 100, offset: 50, data)
        let copies = [
            GrantCopy(source: 100, sourceOffset: 50, destination: 101, destinationOffset: 3000, length: 300),
            GrantCopy(source: 100, sourceDomain: test.domain.id, sourceOffset: 50, destination: 102,
                      destinationDomain: test.domain.id, destinationOffset: 0, length: 10),
            GrantCopy(source: 100, destination: 103, length: 0),
        ]
        let (result, statuses) = try client.copy(copies)
        #expect(result == 0)
        #expect(statuses == [0, 0, 0])
        #expect(try ram(test, 101, offset: 3000, count: 300) == data)
        #expect(try ram(test, 101, offset: 2999, count: 1) == [0])
        #expect(try ram(test, 102, count: 10) == Array(data.prefix(10)))
        #expect(try ram(test, 102, offset: 10, count: 1) == [0])
        // A whole page, into an unmapped frame.
        try fill(test, 110, pattern(4096, seed: 9))
        #expect(try client.copy([GrantCopy(source: 110, destination: 400, length: 4096)]).statuses == [0])
        #expect(try ram(test, 400, count: 4096) == pattern(4096, seed: 9))
        try test.checkPageBookkeeping()
    }

    @Test("An offset plus length beyond the page is GNTST_bad_copy_arg", arguments: [
        (UInt16(4000), UInt16(0), UInt16(97)), (0, 4000, 97), (0, 1, 4096), (4095, 4095, 2),
    ])
    func crossingPage(sourceOffset: UInt16, destinationOffset: UInt16, length: UInt16) throws {
        let test = try TestDomain()
        try fill(test, 100, pattern(4096, seed: 3))
        let (result, statuses) = try GrantClient(test: test).copy([
            GrantCopy(source: 100, sourceOffset: sourceOffset, destination: 101, destinationOffset: destinationOffset, length: length),
        ])
        #expect(result == 0)
        #expect(statuses == [GrantStatus.badCopyArgument.rawValue])
        #expect(try ram(test, 101, count: 4096) == [UInt8](repeating: 0, count: 4096))
    }

    @Test("Copying into the caller's own page-table frame is refused")
    func intoPageTable() throws {
        let test = try TestDomain()
        let before = try ram(test, TestDomain.l1Frame.rawValue, count: 4096)
        try fill(test, 100, pattern(64, seed: 5))
        let (result, statuses) = try GrantClient(test: test).copy([
            GrantCopy(source: 100, destination: TestDomain.l1Frame.rawValue, length: 64),
            GrantCopy(source: 100, destination: TestDomain.l4Frame.rawValue, destinationOffset: 8, length: 8),
        ])
        #expect(result == 0)
        #expect(statuses == [GrantStatus.generalError.rawValue, GrantStatus.generalError.rawValue])
        #expect(try ram(test, TestDomain.l1Frame.rawValue, count: 4096) == before)
        // Reading from a page table is fine.
        #expect(try GrantClient(test: test).copy([GrantCopy(source: TestDomain.l1Frame.rawValue, destination: 101, length: 16)]).statuses == [0])
        #expect(try ram(test, 101, count: 16) == Array(before.prefix(16)))
        try test.checkPageBookkeeping()
    }

    @Test("Frames that are not the caller's RAM, and unknown domains, give Xen's statuses")
    func badFrames() throws {
        let test = try TestDomain()
        let client = GrantClient(test: test)
        let grantFrame = test.layout.grantFrames.frame.rawValue
        let (_, statuses) = try client.copy([
            GrantCopy(source: TestDomain.ramFrames, destination: 101, length: 8),
            GrantCopy(source: 100, destination: grantFrame, length: 8),
            GrantCopy(source: 100, sourceDomain: 9, destination: 101, length: 8),
            GrantCopy(source: 100, destination: 101, destinationDomain: 9, length: 8, flags: GrantCopyFlags.destinationGrantReference),
        ])
        #expect(statuses == [GrantStatus.badPage.rawValue, GrantStatus.badPage.rawValue,
                             GrantStatus.badDomain.rawValue, GrantStatus.badDomain.rawValue])
    }

    @Test("An unmapped op list is -EFAULT")
    func faults() throws {
        let test = try TestDomain()
        test.call(.grantTableOp, GrantTableOp.copy, TestDomain.unmapped, 1)
        #expect(test.result == TestDomain.error(.EFAULT))
        test.call(.grantTableOp, GrantTableOp.copy, TestDomain.unmapped, 0)
        #expect(test.result == 0, "no op, nothing read")
    }

    /// Domain 1 (the caller) and domain 2 (the granter, one grant frame set up).
    func makePair() throws -> (caller: TestDomain, granter: TestDomain, grants: GrantClient) {
        let caller = try TestDomain(id: 1)
        let granter = try TestDomain(id: 2)
        connectPeers([caller, granter])
        let grants = GrantClient(test: granter)
        try #require(try grants.setupTable(frames: 1).status == 0)
        return (caller, granter, grants)
    }

    @Test("Copies from a frame another domain granted, releasing the grant afterwards")
    func fromGrant() throws {
        let (caller, granter, grants) = try makePair()
        let data = pattern(500, seed: 11)
        try fill(granter, 40, offset: 100, data)
        try grants.grant(5, frame: 40, to: 1, flags: GrantFlags.permitAccess | GrantFlags.readonly)
        let (result, statuses) = try GrantClient(test: caller).copy([
            GrantCopy(source: 5, sourceDomain: 2, sourceOffset: 100, destination: 100, destinationOffset: 7, length: 500,
                      flags: GrantCopyFlags.sourceGrantReference),
        ])
        #expect(result == 0)
        #expect(statuses == [0])
        #expect(try ram(caller, 100, offset: 7, count: 500) == data)
        #expect(try grants.entry(5) == UInt64(GrantFlags.permitAccess | GrantFlags.readonly) | 1 << 16 | 40 << 32)
        #expect(granter.domain.state.withLock { $0.grants.active.isEmpty })
        // The caller's frame 40 was not touched, nor the granter's frame 100.
        #expect(try ram(caller, 40, offset: 100, count: 500) == [UInt8](repeating: 0, count: 500))
        #expect(try ram(granter, 100, offset: 7, count: 500) == [UInt8](repeating: 0, count: 500))
    }

    @Test("Copies into a frame another domain granted for writing")
    func intoGrant() throws {
        let (caller, granter, grants) = try makePair()
        let data = pattern(128, seed: 21)
        try fill(caller, 100, data)
        try grants.grant(6, frame: 41, to: 1)
        let before = granter.pageInfo(41)
        let (result, statuses) = try GrantClient(test: caller).copy([
            GrantCopy(source: 100, destination: 6, destinationDomain: 2, destinationOffset: 4096 - 128, length: 128,
                      flags: GrantCopyFlags.destinationGrantReference),
        ])
        #expect(result == 0)
        #expect(statuses == [0])
        #expect(try ram(granter, 41, offset: 4096 - 128, count: 128) == data)
        #expect(try grants.flags(6) == GrantFlags.permitAccess)
        #expect(granter.pageInfo(41) == before)
        try granter.checkPageBookkeeping()
    }

    @Test("Grant copies between two grants of other domains")
    func grantToGrant() throws {
        let (caller, granter, grants) = try makePair()
        let third = try TestDomain(id: 3)
        connectPeers([caller, granter, third])
        let thirdGrants = GrantClient(test: third)
        try #require(try thirdGrants.setupTable(frames: 1).status == 0)
        try fill(granter, 42, pattern(32, seed: 40))
        try grants.grant(0, frame: 42, to: 1, flags: GrantFlags.permitAccess | GrantFlags.readonly)
        try thirdGrants.grant(511, frame: 43, to: 1)
        let (_, statuses) = try GrantClient(test: caller).copy([
            GrantCopy(source: 0, sourceDomain: 2, destination: 511, destinationDomain: 3, destinationOffset: 64, length: 32,
                      flags: GrantCopyFlags.sourceGrantReference | GrantCopyFlags.destinationGrantReference),
        ])
        #expect(statuses == [0])
        #expect(try ram(third, 43, offset: 64, count: 32) == pattern(32, seed: 40))
        #expect(try grants.flags(0) == GrantFlags.permitAccess | GrantFlags.readonly)
        #expect(try thirdGrants.flags(511) == GrantFlags.permitAccess)
    }

    @Test("Grants that do not allow the copy give Xen's statuses and nothing is copied")
    func refusedGrants() throws {
        let (caller, granter, grants) = try makePair()
        let client = GrantClient(test: caller)
        try fill(caller, 100, pattern(16, seed: 1))
        try grants.grant(1, frame: 44, to: 1, flags: GrantFlags.permitAccess | GrantFlags.readonly)
        try grants.grant(2, frame: 45, to: 7)
        try grants.grant(3, frame: granter.layout.sharedInfo.frame.rawValue, to: 1)
        try grants.grant(4, frame: TestDomain.l1Frame.rawValue, to: 1)
        let table = try ram(granter, TestDomain.l1Frame.rawValue, count: 4096)
        func into(_ reference: UInt64) -> GrantCopy {
            GrantCopy(source: 100, destination: reference, destinationDomain: 2, length: 16, flags: GrantCopyFlags.destinationGrantReference)
        }
        let (result, statuses) = try client.copy([
            into(1),      // read-only grant, written
            into(2),      // granted to domain 7
            into(3),      // not RAM
            into(4),      // a page table of the granter
            into(512),    // beyond the table
            // Another domain's frame without a grant reference.
            GrantCopy(source: 44, sourceDomain: 2, destination: 101, length: 16),
        ])
        #expect(result == 0)
        #expect(statuses == [GrantStatus.generalError.rawValue, GrantStatus.generalError.rawValue, GrantStatus.badPage.rawValue,
                             GrantStatus.generalError.rawValue, GrantStatus.badGrantReference.rawValue,
                             GrantStatus.permissionDenied.rawValue])
        #expect(try ram(granter, 44, count: 16) == [UInt8](repeating: 0, count: 16))
        #expect(try ram(granter, TestDomain.l1Frame.rawValue, count: 4096) == table)
        for reference: UInt32 in [1, 2, 3, 4] {
            #expect(try grants.flags(reference) & (GrantFlags.reading | GrantFlags.writing) == 0, "grant \(reference)")
        }
        #expect(granter.domain.state.withLock { $0.grants.active.isEmpty })
        try granter.checkPageBookkeeping()
    }
}

@Suite("Grant holds from several threads")
struct GrantConcurrencyTests {
    /// Two threads take and drop holds on one grant as fast as they can; each checks, while
    /// it holds, that the bits it relies on are set. Before holds and bits changed under one
    /// lock, a release could clear GTF_reading between another hold's compare-exchange and
    /// its count; this caught that in most runs.
    @Test("While a hold is taken, its GTF_reading/GTF_writing stay set", arguments: [false, true])
    func holdersRace(withWriter: Bool) throws {
        let test = try TestDomain()
        let client = GrantClient(test: test)
        try #require(try client.setupTable(frames: 1).status == 0)
        try client.grant(1, frame: 300, to: 0)
        let domain = test.domain
        let address = client.entryAddress(1)
        let memory = test.memory
        let violations = Atomic<Int>(0)
        let failures = Atomic<Int>(0)
        let started = Atomic<Int>(0)
        let finished = DispatchGroup()
        for thread in 0..<2 {
            finished.enter()
            // Threads of their own, so that each can wait for the other to start.
            Thread {
                defer { finished.leave() }
                let readOnly = !(withWriter && thread == 1)
                let needed = GrantFlags.reading | (readOnly ? 0 : GrantFlags.writing)
                started.add(1, ordering: .acquiringAndReleasing)
                while started.load(ordering: .acquiring) < 2 { sched_yield() }
                for _ in 0..<50_000 {
                    guard let mapping = try? domain.acquireGrant(1, for: 0, readOnly: readOnly) else {
                        failures.add(1, ordering: .relaxed)
                        continue
                    }
                    let flags = (try? memory.atomicLoad64(at: address)).map { UInt16(truncatingIfNeeded: $0) } ?? 0
                    if flags & needed != needed { violations.add(1, ordering: .relaxed) }
                    domain.releaseGrant(mapping)
                }
            }.start()
        }
        finished.wait()
        #expect(failures.load(ordering: .relaxed) == 0)
        #expect(violations.load(ordering: .relaxed) == 0)
        #expect(try client.flags(1) == GrantFlags.permitAccess)
        #expect(test.pageInfo(300).typeCount == 0)
        #expect(domain.state.withLock { $0.grants.active.isEmpty })
    }
}
