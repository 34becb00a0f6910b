// ring0/entry.S repeats offsets of the hypervisor area and of the core's shared layout
// as `.equ` constants (it is assembled alone); these tests hold them to the Swift.

import Foundation
import Ring0Core
import Testing
import Hypervisor
import KVM
import XenABI

@testable import Machine

@Suite("ring0/entry.S")
struct Ring0EntryTests {
    static let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("ring0/entry.S")

    /// The `.equ NAME, value` lines with a plain number as value.
    static func constants() throws -> [String: UInt64] {
        let text = try String(contentsOf: source, encoding: .utf8)
        var constants: [String: UInt64] = [:]
        for line in text.split(separator: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard trimmed.hasPrefix(".equ ") else { continue }
            let parts = trimmed.dropFirst(5).split(separator: ",", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let name = parts[0].trimmingCharacters(in: .whitespaces)
            let value = parts[1].split(separator: "/").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            if value.hasPrefix("0x"), let number = UInt64(value.dropFirst(2), radix: 16) {
                constants[name] = number
            } else if value.hasPrefix("-"), let number = UInt64(value.dropFirst()) {
                constants[name] = 0 &- number
            } else if let number = UInt64(value) {
                constants[name] = number
            }
        }
        return constants
    }

    @Test("Its constants agree with HypervisorArea, StubCode, CoreLayout and the flat selectors")
    func constantsAgree() throws {
        let equ = try Self.constants()
        let area = HypervisorArea(ramFrames: 256, vcpuCount: 2)
        let expected: [String: UInt64] = [
            "VCPU_BLOCK_MASK": HypervisorArea.perVCPUVirtualStride - 1,
            "IST_TOP": area.istTopVirtual(0) - area.vcpuVirtual(0),
            "CORE_BLOCK": HypervisorArea.coreBlockOffset,
            "CORE_STACK_TOP": HypervisorArea.coreStackTopOffset,
            "REQUEST_CR3": UInt64(CoreLayout.vcpuRequestCR3),
            "REQUEST_FLUSH": UInt64(CoreLayout.vcpuRequestFlush),
            "REQUEST_INVALIDATE": UInt64(CoreLayout.vcpuRequestInvalidate),
            "INVALIDATE_ADDRESS": UInt64(CoreLayout.vcpuInvalidateAddress),
            "ATTENTION": UInt64(CoreLayout.vcpuAttention),
            "STUBS_TO_CORE": HypervisorArea.coreCodeVirtualOffset,
            "STUB_STRIDE": UInt64(StubCode.vectorStubStride),
            "HYPERCALL_VECTOR": UInt64(HypercallPage.vector),
            "SYSCALL_STUB": UInt64(StubCode.syscallStubOffset),
            "GUEST_CS": UInt64(FlatSelector.kernelCS64 | 3),
            "GUEST_SS": UInt64(FlatSelector.kernelSS64 | 3),
            "RFLAGS_IOPL": RFlags.iopl,
            "RFLAGS_GUEST_SET": RFlags.interrupt | RFlags.fixed,
            "KIND_HYPERCALL_PAGE": CoreLayout.entryHypercallPage,
            "KIND_SYSCALL": CoreLayout.entrySyscall,
            "KIND_PAGE_FAULT": CoreLayout.entryPageFault,
            "TRAP_ERROR_CODE": UInt64(CoreLayout.vcpuTrapErrorCode),
            "PAGE_FAULT_VECTOR": UInt64(X86Exception.pageFault),
            "KIND_INVALID_OPCODE": CoreLayout.entryInvalidOpcode,
            "INVALID_OPCODE_VECTOR": UInt64(X86Exception.invalidOpcode),
            "ATTENTION_VECTOR": UInt64(StubCode.attentionVector),
            "VCPU_INFO": UInt64(CoreLayout.vcpuInfo),
            "REQUEST_MSR": UInt64(CoreLayout.vcpuRequestMSR),
            "REQUEST_MSR_VALUE": UInt64(CoreLayout.vcpuRequestMSRValue),
            "RAM_BASE": UInt64(CoreLayout.vcpuRAMBase),
            "UPCALL_MASK": UInt64(VCPUInfoLayout.upcallMask),
            "GP_STUB": UInt64(StubCode.generalProtectionOffset),
            "FAST_IO_BELOW_TOP": StubCode.fastIOFlagBelowTop,
            "REQUEST_SWAP_GS": UInt64(CoreLayout.vcpuRequestSwapGS),
            "INACTIVE_GS_BASE": UInt64(CoreLayout.vcpuInactiveGSBase),
            "MSR_GS_BASE": UInt64(MSR.gsBase),
            "RECORDER_ENABLED": UInt64(CoreLayout.vcpuRecorderEnabled),
            "RECORDER_COUNT": UInt64(CoreLayout.vcpuRecorderCount),
            "RECORDER": UInt64(CoreLayout.vcpuRecorder),
            "RECORDER_SLOT_MASK": UInt64(CoreLayout.recorderSlots - 1),
            "RECORDER_ENTRY_SHIFT": UInt64(CoreLayout.recorderEntrySize.trailingZeroBitCount),
            "RECORD_CORE_RETURN": CoreLayout.recordCoreReturn,
            "RECORD_CORE_DEFER": CoreLayout.recordCoreDefer,
            "SAVED_RIP": UInt64(CoreLayout.savedRIP),
            "SAVED_RSP": UInt64(CoreLayout.savedRSP),
            "KIND_TIMER": CoreLayout.entryTimer,
            "REQUEST_DEADLINE": UInt64(CoreLayout.vcpuRequestDeadline),
            "MSR_TSC_DEADLINE": UInt64(MSR.tscDeadline),
            "MSR_X2APIC_EOI": 0x80b,
            // The slot holding the frame address, from the frame (40 bytes below the top).
            "LSTAR_SELF": 0 &- (HypervisorArea.lstarFrameSlotBelowTop - 40),
        ]
        for (name, value) in expected {
            #expect(equ[name] == value, "\(name) in ring0/entry.S")
        }
        // Every vCPU block is aligned to its stride, so the mask finds it from the IST stack.
        #expect(area.vcpuVirtual(1) % HypervisorArea.perVCPUVirtualStride == 0)
        #expect(HypervisorArea.coreStackTopOffset <= HypervisorArea.perVCPUVirtualStride)
    }

    @Test("#PF, #UD and the APIC timer lead to the core only where ring 0 runs natively; the other gates as before")
    func pageFaultGate() {
        func gate(_ idt: [UInt8], _ vector: Int) -> UInt64 {
            let low = (0..<8).reduce(UInt64(0)) { $0 | UInt64(idt[vector * 16 + $1]) << (8 * $1) }
            let high = (8..<12).reduce(UInt64(0)) { $0 | UInt64(idt[vector * 16 + $1]) << (8 * ($1 - 8)) }
            return (low & 0xffff) | ((low >> 48) & 0xffff) << 16 | high << 32
        }
        let stubs: UInt64 = 0xffff_8080_0000_0000
        let entries = DescriptorTablesBuilder.CoreEntries(hypercall: 0x1000, syscall: 0x2000, generalProtection: 0x3000,
                                                          pageFault: 0x4000, invalidOpcode: 0x5000, timer: 0x6000)
        let withTraps = DescriptorTablesBuilder.idt(stubs: stubs, coreEntries: entries)
        #expect(gate(withTraps, 14) == 0x4000 && gate(withTraps, 6) == 0x5000 && gate(withTraps, 13) == 0x3000 && gate(withTraps, 0x82) == 0x1000)
        #expect(gate(withTraps, Int(FastTimer.timerVector)) == 0x6000)
        // The timer's gate cannot be raised from ring 3 (`int $0xec` is a #GP).
        #expect((withTraps[Int(FastTimer.timerVector) * 16 + 5] >> 5) & 3 == 0)
        var withoutTraps = entries
        withoutTraps.pageFault = nil
        withoutTraps.invalidOpcode = nil
        withoutTraps.timer = nil
        let plain = DescriptorTablesBuilder.idt(stubs: stubs, coreEntries: withoutTraps)
        #expect(gate(plain, 14) == stubs + 14 * UInt64(StubCode.vectorStubStride) && gate(plain, 6) == stubs + 6 * UInt64(StubCode.vectorStubStride))
        #expect(gate(plain, Int(FastTimer.timerVector)) == stubs + UInt64(FastTimer.timerVector) * UInt64(StubCode.vectorStubStride))
        #expect(!HypervisorArea(ramFrames: 256, vcpuCount: 1, fastPath: false, coreTraps: true).coreTraps, "no core, no core traps")
        // Where ring 0 runs natively, `syscall` enters the core directly; KERNEL_GS_BASE
        // points at the vCPU's frame, and the slot below the #GP flag holds it again.
        let native = HypervisorArea(ramFrames: 256, vcpuCount: 2, fastPath: true, coreTraps: true)
        #expect(native.syscallEntryVirtual == native.coreCodeVirtual + Ring0CoreImage.lstarEntryOffset)
        #expect(native.kernelGSBase(1) == native.frameVirtual(1))
        #expect(HypervisorArea.lstarFrameSlotBelowTop > StubCode.fastIOFlagBelowTop)
        let emulated = HypervisorArea(ramFrames: 256, vcpuCount: 2, fastPath: true, coreTraps: false)
        #expect(emulated.syscallEntryVirtual == emulated.stubsVirtual + UInt64(StubCode.coreSyscallStubOffset) && emulated.kernelGSBase(0) == 0)
    }

    /// Whether the Swift toolchain next to `swiftc` has the LLVM tools the core's build needs.
    static var llvmToolsAvailable: Bool {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for directory in path.split(separator: ":") {
            let swiftc = URL(fileURLWithPath: String(directory)).appendingPathComponent("swiftc")
            guard FileManager.default.isExecutableFile(atPath: swiftc.path) else { continue }
            let bin = swiftc.resolvingSymlinksInPath().deletingLastPathComponent()
            return ["clang", "ld.lld", "llvm-objcopy", "llvm-nm", "llvm-objdump"].allSatisfy {
                FileManager.default.isExecutableFile(atPath: bin.appendingPathComponent($0).path)
            }
        }
        return false
    }

    @Test("The committed core image matches its sources (scripts/build-ring0-core --check)",
          .enabled(if: llvmToolsAvailable, "needs swiftc with the toolchain's clang, ld.lld and llvm-objcopy on PATH"))
    func imageIsCurrent() throws {
        let repository = Self.source.deletingLastPathComponent().deletingLastPathComponent()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [repository.appendingPathComponent("scripts/build-ring0-core").path, "--check"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(text)")
    }
}

@Suite("The local APIC timer's machine set-up")
struct LocalTimerSetupTests {
    @Test("KVM's CPUID table gains x2APIC and the TSC-deadline timer only for the local timer; the policy is untouched")
    func cpuid() {
        let policy = CPUIDPolicy(hostLeaves: [CPUIDPolicy.Leaf(function: 1, index: 0, eax: 0x800f12, ebx: 0, ecx: 0x8000_0000, edx: 0, indexed: false)])
        let leaf1 = policy.leaves.first { $0.function == 1 }
        let plain = DomainMachine.kvmCPUID(policy, host: []).first { $0.function == 1 }
        let timed = DomainMachine.kvmCPUID(policy, host: [], localTimer: true).first { $0.function == 1 }
        #expect(plain?.ecx == leaf1?.ecx)
        #expect(timed?.ecx == (leaf1?.ecx ?? 0) | 1 << 21 | 1 << 24)
        #expect(timed?.eax == plain?.eax && timed?.edx == plain?.edx)
        #expect(policy.leaves.first { $0.function == 1 }?.ecx == leaf1?.ecx)
    }
}
