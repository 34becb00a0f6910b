import Testing
@testable import Machine

@Suite("Software interrupts at RIP (kicks leave RIP alone)")
struct SoftwareInterruptTests {
    func check(_ bytes: [UInt8]) -> Bool {
        SoftwareInterruptInstruction.mayBeAt { $0 < bytes.count ? bytes[$0] : nil }
    }

    @Test("int3, int n, into and int1 are found, also behind prefixes")
    func found() {
        #expect(check([0xcc, 0x90]))
        #expect(check([0xcd, 0x80]))
        #expect(check([0xce, 0x90]))
        #expect(check([0xf1, 0x90]))
        #expect(check([0x66, 0xcd, 0x82]))
        #expect(check([0x48, 0xcc]))
        #expect(check([0x2e, 0x66, 0x48, 0xcc]))
        #expect(check([0x66, 0x66, 0x66, 0x66, 0x66, 0xcc]))
    }

    @Test("Other instructions are not")
    func notFound() {
        #expect(!check([0x90]))
        #expect(!check([0x0f, 0x05]))            // syscall
        #expect(!check([0x48, 0x8b, 0x04, 0x24]))
        #expect(!check([0xc3]))
        #expect(!check([0x66, 0x66, 0x48, 0x89, 0xc8]))
    }

    @Test("Unreadable bytes, or 15 prefixes, count as an int (RIP is then left alone)")
    func unreadable() {
        #expect(check([]))
        #expect(check([0x66]))
        #expect(check([UInt8](repeating: 0x66, count: 15) + [0x90]))
    }
}
