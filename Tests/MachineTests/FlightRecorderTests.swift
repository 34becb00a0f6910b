import GuestMemory
import KVM
import Ring0Core
import Testing

@testable import Machine

@Suite("flight recorder")
struct FlightRecorderTests {
    /// A recorder over fake guest memory that covers vCPU 0's core block.
    static func recorder() throws -> FlightRecorder {
        let area = HypervisorArea(ramFrames: 256, vcpuCount: 1, fastPath: true, coreTraps: true)
        let block = area.coreBlock(0)
        let region = try GuestMemoryRegion(base: block, size: 0x1000, name: "core block", isGuestRAM: false)
        return FlightRecorder(memory: GuestMemory(regions: [region]), area: area, vcpu: 0)
    }

    @Test("starts disabled and empty; enable() sets the flag ring0/entry.S reads")
    func enable() throws {
        let recorder = try Self.recorder()
        #expect(!recorder.isEnabled)
        #expect(recorder.lines().isEmpty)
        recorder.enable(true)
        #expect(recorder.isEnabled)
        let flag: UInt64 = try recorder.memory.read(at: GuestPhysicalAddress(recorder.block + UInt64(CoreLayout.vcpuRecorderEnabled)))
        #expect(flag == 1)
    }

    @Test("keeps the last slots' worth of events, oldest first, in entry.S's layout")
    func ring() throws {
        let recorder = try Self.recorder()
        let total = CoreLayout.recorderSlots + 8
        for index in 0..<total {
            recorder.record(CoreLayout.recordHostExit | 2 << 16, rip: 0x1000 + UInt64(index), cr3: 0x5000, rsp: 0x9000)
        }
        let lines = recorder.lines()
        #expect(lines.count == CoreLayout.recorderSlots)
        #expect(lines.first?.contains("#8 exit (signal)  rip 0x1008  cr3 0x5000  rsp 0x9000") == true, "\(lines.first ?? "")")
        #expect(lines.last?.contains("#\(total - 1) exit (signal)  rip 0x\(String(0x1000 + total - 1, radix: 16))") == true)
        // The entry of event #8 sits where ring0/entry.S would have put it: slot 8 of 32.
        let slot = recorder.block + UInt64(CoreLayout.vcpuRecorder + 8 * CoreLayout.recorderEntrySize)
        let rip: UInt64 = try recorder.memory.read(at: GuestPhysicalAddress(slot + 8))
        #expect(rip == 0x1008)
        let count: UInt64 = try recorder.memory.read(at: GuestPhysicalAddress(recorder.block + UInt64(CoreLayout.vcpuRecorderCount)))
        #expect(count == UInt64(total))
    }

    @Test("names the events the core and the host write")
    func descriptions() {
        #expect(FlightRecorder.describe(CoreLayout.recordCoreEntry | CoreLayout.entryPageFault) == "core entry (page fault)")
        #expect(FlightRecorder.describe(CoreLayout.recordCoreReturn | CoreLayout.entrySyscall) == "core return (syscall)")
        #expect(FlightRecorder.describe(CoreLayout.recordCoreDefer | CoreLayout.entryHypercallPage) == "core defers (hypercall page)")
        #expect(FlightRecorder.describe(CoreLayout.recordHostResume) == "host resumes")
        #expect(FlightRecorder.describe(CoreLayout.recordHostExit | FlightRecorder.exitCode(.shutdown) << 16) == "exit (shutdown)")
        #expect(FlightRecorder.describe(CoreLayout.recordHostExit | FlightRecorder.exitCode(.io(port: 0, isWrite: true, size: 2, count: 1)) << 16)
                == "exit (stub I/O)")
    }
}
