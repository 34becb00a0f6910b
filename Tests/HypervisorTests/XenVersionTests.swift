// xen_version (XenVersion.swift).

import GuestMemory
import Testing
import XenABI

@testable import Hypervisor

@Suite("xen_version")
struct XenVersionTests {
    @Test("XENVER_version is 4.19 as major << 16 | minor")
    func version() throws {
        let test = try TestDomain()
        #expect(test.call(.xenVersion, XenVersionCommand.version, 0) == .value(0x0004_0013))
        #expect(test.result == 0x0004_0013)
    }

    @Test("XENVER_extraversion writes a NUL-padded 16-byte string")
    func extraversion() throws {
        let test = try TestDomain()
        try test.write([UInt8](repeating: 0xaa, count: 32), at: TestDomain.buffer)
        test.call(.xenVersion, XenVersionCommand.extraversion, TestDomain.buffer)
        #expect(test.result == 0)
        let bytes = try test.read(TestDomain.buffer, count: 32)
        #expect(Array(bytes[0..<8]) == Array(".0-domus".utf8))
        #expect(bytes[8..<16].allSatisfy { $0 == 0 })
        #expect(bytes[16..<32].allSatisfy { $0 == 0xaa }, "only xen_extraversion_t's 16 bytes are written")
    }

    @Test("XENVER_capabilities writes \"xen-3.0-x86_64 \" into a 1024-byte buffer")
    func capabilities() throws {
        let test = try TestDomain()
        try test.write([UInt8](repeating: 0xaa, count: 1100), at: TestDomain.buffer)
        test.call(.xenVersion, XenVersionCommand.capabilities, TestDomain.buffer)
        #expect(test.result == 0)
        let bytes = try test.read(TestDomain.buffer, count: 1100)
        #expect(Array(bytes[0..<15]) == Array("xen-3.0-x86_64 ".utf8))
        #expect(bytes[15..<1024].allSatisfy { $0 == 0 })
        #expect(bytes[1024...].allSatisfy { $0 == 0xaa })
    }

    @Test("XENVER_platform_parameters gives HYPERVISOR_VIRT_START")
    func platformParameters() throws {
        let test = try TestDomain()
        test.call(.xenVersion, XenVersionCommand.platformParameters, TestDomain.buffer)
        #expect(test.result == 0)
        #expect(try test.read(UInt64.self, at: TestDomain.buffer) == 0xffff_8000_0000_0000)
    }

    @Test("XENVER_get_features submap 0: preserve-A/D (5), gnttab avail bits (7), direct-mapped (17)")
    func features() throws {
        let test = try TestDomain()
        try test.write(UInt32(0), at: TestDomain.buffer)
        try test.write(UInt32(0xffff_ffff), at: TestDomain.buffer + 4)
        test.call(.xenVersion, XenVersionCommand.getFeatures, TestDomain.buffer)
        #expect(test.result == 0)
        let submap = try test.read(UInt32.self, at: TestDomain.buffer + 4)
        #expect(submap == (1 << 5) | (1 << 7) | (1 << 17))
        // Linux panics without 5 and 7 and must not see auto-translate (2), supervisor-mode
        // kernel (3) or writable page tables (0).
        #expect(submap & 0b1101 == 0)
        #expect(try test.read(UInt32.self, at: TestDomain.buffer) == 0, "submap_idx is left alone")
    }

    @Test("pae_pgdir_above_4gb (bit 4) is reported once vm_assist enables pae_extended_cr3, and goes with it")
    func featuresAfterVMAssist() throws {
        let test = try TestDomain()
        func submap() throws -> UInt32 {
            try test.write(UInt32(0), at: TestDomain.buffer)
            test.call(.xenVersion, XenVersionCommand.getFeatures, TestDomain.buffer)
            #expect(test.result == 0)
            return try test.read(UInt32.self, at: TestDomain.buffer + 4)
        }
        #expect(try submap() & (1 << 4) == 0)
        test.call(.vmAssist, VMAssist.cmdEnable, VMAssist.typePaeExtendedCR3)
        #expect(test.result == 0)
        #expect(try submap() == (1 << 4) | (1 << 5) | (1 << 7) | (1 << 17))
        test.call(.vmAssist, VMAssist.cmdDisable, VMAssist.typePaeExtendedCR3)
        #expect(try submap() & (1 << 4) == 0)
    }

    @Test("Feature submaps other than 0 are -EINVAL, as on Xen, and the buffer is left alone")
    func otherSubmaps() throws {
        let test = try TestDomain()
        for index: UInt32 in [1, 2, 0xffff_ffff] {
            try test.write(index, at: TestDomain.buffer)
            try test.write(UInt32(0xaaaa_aaaa), at: TestDomain.buffer + 4)
            test.call(.xenVersion, XenVersionCommand.getFeatures, TestDomain.buffer)
            #expect(test.result == TestDomain.error(.EINVAL))
            #expect(try test.read(UInt32.self, at: TestDomain.buffer + 4) == 0xaaaa_aaaa)
        }
    }

    @Test("XENVER_pagesize is 4096")
    func pagesize() throws {
        let test = try TestDomain()
        test.call(.xenVersion, XenVersionCommand.pagesize, 0)
        #expect(test.result == 4096)
    }

    @Test("XENVER_guest_handle copies the domain's 16-byte handle")
    func guestHandle() throws {
        let test = try TestDomain()
        test.call(.xenVersion, XenVersionCommand.guestHandle, TestDomain.buffer)
        #expect(test.result == 0)
        #expect(try test.read(TestDomain.buffer, count: 16) == Array(1...16))
    }

    @Test("Commands Xen keeps from unprivileged domains are -EPERM", arguments: [
        XenVersionCommand.compileInfo, XenVersionCommand.changeset, XenVersionCommand.commandline, XenVersionCommand.buildID,
    ])
    func privileged(command: UInt64) throws {
        let test = try TestDomain()
        test.call(.xenVersion, command, TestDomain.buffer)
        #expect(test.result == TestDomain.error(.EPERM))
    }

    @Test("An unknown command is -ENOSYS")
    func unknown() throws {
        let test = try TestDomain()
        test.call(.xenVersion, 11, TestDomain.buffer)
        #expect(test.result == TestDomain.error(.ENOSYS))
        test.call(.xenVersion, 0x1_0000_0000, TestDomain.buffer)
        #expect(test.result == TestDomain.error(.ENOSYS))
    }

    @Test("Commands with a bad buffer are -EFAULT", arguments: [
        XenVersionCommand.extraversion, XenVersionCommand.capabilities, XenVersionCommand.platformParameters,
        XenVersionCommand.getFeatures, XenVersionCommand.guestHandle,
    ])
    func badBuffer(command: UInt64) throws {
        let test = try TestDomain()
        for address in [TestDomain.unmapped, TestDomain.unmapped - 2, 0xdead_0000_0000_0000] {
            test.call(.xenVersion, command, address)
            #expect(test.result == TestDomain.error(.EFAULT), "address \(address)")
        }
    }

    @Test("Results are never written into read-only pages (a page table), not even partly")
    func readOnlyBuffer() throws {
        let test = try TestDomain()
        let table = TestDomain.va(TestDomain.l1Frame.rawValue)
        let before = try test.read(table, count: 1024)
        test.call(.xenVersion, XenVersionCommand.capabilities, table)
        #expect(test.result == TestDomain.error(.EFAULT))
        // A buffer starting on a writable page and running into a read-only one.
        let straddling = TestDomain.va(TestDomain.l4Frame.rawValue) - 8   // frame 0 is writable, the L4 is not
        test.call(.xenVersion, XenVersionCommand.extraversion, straddling)
        #expect(test.result == TestDomain.error(.EFAULT))
        #expect(try test.read(straddling, count: 8) == [UInt8](repeating: 0, count: 8))
        #expect(try test.read(table, count: 1024) == before)
    }
}
