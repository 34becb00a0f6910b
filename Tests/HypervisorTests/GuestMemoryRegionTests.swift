// The host mapping behind guest RAM: zeroed, bounds-checked, and 2 MiB-aligned when
// large enough, so that the host can back it with huge pages and KVM map it 2 MiB at
// a time.

import GuestMemory
import Testing

@Suite("Guest memory regions")
struct GuestMemoryRegionTests {
    @Test("A region of 2 MiB or more starts on a 2 MiB boundary of the host's address space")
    func hugeAligned() throws {
        for megabytes: UInt64 in [2, 3, 34] {
            let region = try GuestMemoryRegion(base: GuestPhysicalAddress(0), size: megabytes << 20, name: "ram", isGuestRAM: true)
            #expect(region.hostAddress % (2 << 20) == 0, "\(megabytes) MiB at 0x\(String(region.hostAddress, radix: 16))")
        }
    }

    @Test("Every byte of a region reads zero at first and keeps what is written, to the last one")
    func zeroedAndWritable() throws {
        let size: UInt64 = (4 << 20) + 4096
        let memory = GuestMemory(regions: [try GuestMemoryRegion(base: GuestPhysicalAddress(0x10_0000), size: size, name: "ram", isGuestRAM: true)])
        let last = GuestPhysicalAddress(0x10_0000 + size - 8)
        #expect(try memory.read(UInt64.self, at: GuestPhysicalAddress(0x10_0000)) == 0)
        #expect(try memory.read(UInt64.self, at: last) == 0)
        try memory.write(UInt64(0x1122_3344_5566_7788), at: last)
        #expect(try memory.read(UInt64.self, at: last) == 0x1122_3344_5566_7788)
        #expect(throws: GuestMemoryError.self) { try memory.read(UInt8.self, at: GuestPhysicalAddress(0x10_0000 + size)) }
    }

    @Test("A region smaller than a huge page still maps")
    func small() throws {
        let region = try GuestMemoryRegion(base: GuestPhysicalAddress(0), size: 8192, name: "hypervisor", isGuestRAM: false)
        #expect(region.hostAddress % 4096 == 0)
        #expect(region.size == 8192)
    }
}
