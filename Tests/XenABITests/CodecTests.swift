// Explicit little-endian codecs (Bytes.swift, StartInfo.swift, SharedInfo.swift,
// HypercallArguments.swift): field positions and encode/decode round trips.

import Testing
import XenABI

/// Deterministic bytes for round trips.
func patternBytes(_ count: Int, seed: UInt8) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ Int(seed) &* 11 &+ 1) }
}

func le64(_ bytes: [UInt8], _ offset: Int) -> UInt64 {
    (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) }
}

@Suite("Wire codecs")
struct CodecTests {
    @Test("ByteReader reads little-endian integers and refuses reads past the end")
    func byteReader() throws {
        let reader = ByteReader([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09])
        #expect(try reader.u8(0) == 1)
        #expect(try reader.u16(1) == 0x0302)
        #expect(try reader.u32(1) == 0x0504_0302)
        #expect(try reader.u64(1) == 0x0908_0706_0504_0302)
        #expect(try reader.i64(0) == 0x0807_0605_0403_0201)
        #expect(throws: ByteReader.OutOfBounds.self) { try reader.u64(2) }
        #expect(throws: ByteReader.OutOfBounds.self) { try reader.u8(9) }
        #expect(throws: ByteReader.OutOfBounds.self) { try reader.u8(-1) }
        #expect(throws: ByteReader.OutOfBounds.self) { try ByteReader([]).u8(0) }
    }

    @Test("ByteWriter stores little-endian integers and ignores stores outside its size")
    func byteWriter() {
        var writer = ByteWriter(size: 8)
        writer.set(UInt16(0xbeef), at: 1)
        writer.set(UInt32(0x1122_3344), at: 6)      // does not fit: ignored
        writer.set(UInt8(7), at: -1)                // ignored
        #expect(writer.bytes == [0, 0xef, 0xbe, 0, 0, 0, 0, 0])
        writer.set(bytes: [1, 2, 3, 4, 5], at: 5, limit: 10)
        #expect(writer.bytes == [0, 0xef, 0xbe, 0, 0, 1, 2, 3])
        writer.set(bytes: [9, 9, 9], at: 0, limit: 2)
        #expect(writer.bytes.prefix(3) == [9, 9, 0xbe])
    }

    @Test("start_info: fields at Xen's offsets, round trip, command line cut to 1023 bytes")
    func startInfo() throws {
        var info = StartInfo()
        info.nrPages = 0x20000
        info.sharedInfo = 0x4000_0000
        info.flags = StartInfoFlags.modStartPFN
        info.storeMFN = 0x4a01
        info.storeEvtchn = 2
        info.consoleMFN = 0x4a02
        info.consoleEvtchn = 1
        info.ptBase = 0xffff_ffff_84a0_3000
        info.nrPTFrames = 41
        info.mfnList = 0x80_0000_0000
        info.modStart = 0x4c00
        info.modLen = 0x1234
        info.commandLine = "root=/dev/xvda1 console=hvc0"
        info.firstP2MPFN = 0x4c02
        info.nrP2MFrames = 0x104
        let bytes = info.encode()
        #expect(bytes.count == 0x490)
        #expect(Array(bytes[0..<15]) == Array("xen-3.0-x86_64\0".utf8))
        #expect(bytes[15..<32].allSatisfy { $0 == 0 })
        #expect(le64(bytes, 0x20) == 0x20000)
        #expect(le64(bytes, 0x28) == 0x4000_0000)
        #expect(bytes[0x30] == 8 && bytes[0x31..<0x38].allSatisfy { $0 == 0 })
        #expect(le64(bytes, 0x38) == 0x4a01)
        #expect(bytes[0x40] == 2)
        #expect(le64(bytes, 0x48) == 0x4a02)
        #expect(bytes[0x50] == 1)
        #expect(le64(bytes, 0x58) == 0xffff_ffff_84a0_3000)
        #expect(le64(bytes, 0x60) == 41)
        #expect(le64(bytes, 0x68) == 0x80_0000_0000)
        #expect(le64(bytes, 0x70) == 0x4c00)
        #expect(le64(bytes, 0x78) == 0x1234)
        #expect(Array(bytes[0x80..<0x9c]) == Array("root=/dev/xvda1 console=hvc0".utf8))
        #expect(bytes[0x9c] == 0)
        #expect(le64(bytes, 0x480) == 0x4c02)
        #expect(le64(bytes, 0x488) == 0x104)
        #expect(try StartInfo(decoding: bytes) == info)

        info.commandLine = String(repeating: "x", count: 2000)
        let long = info.encode()
        #expect(long[0x80..<(0x80 + 1023)].allSatisfy { $0 == UInt8(ascii: "x") })
        #expect(long[0x80 + 1023] == 0, "always NUL-terminated")
        #expect(try StartInfo(decoding: long).commandLine.utf8.count == 1023)
        #expect(throws: ByteReader.OutOfBounds.self) { try StartInfo(decoding: Array(bytes.prefix(0x48f))) }
    }

    @Test("vcpu_time_info round trip, with a negative shift")
    func vcpuTimeInfo() throws {
        let info = VCPUTimeInfo(version: 7, tscTimestamp: 0x1122_3344_5566_7788, systemTime: 0x99aa_bbcc_ddee_ff00,
                                tscToSystemMul: 0xc539_fc0e, tscShift: -1, flags: VCPUTimeInfo.flagTSCStable)
        let bytes = info.encode()
        #expect(bytes.count == 32)
        #expect(bytes[0] == 7 && le64(bytes, 8) == 0x1122_3344_5566_7788 && le64(bytes, 0x10) == 0x99aa_bbcc_ddee_ff00)
        #expect(Array(bytes[0x18..<0x1e]) == [0x0e, 0xfc, 0x39, 0xc5, 0xff, 0x01])
        #expect(try VCPUTimeInfo(decoding: bytes) == info)
    }

    @Test("trap_info: {u8 vector, u8 flags, u16 cs, u64 address}")
    func trapInfo() throws {
        let info = TrapInfo(vector: 0x80, flags: 7, cs: 0xe033, address: 0xffff_ffff_8100_0100)
        let bytes = info.encode()
        #expect(bytes == [0x80, 7, 0x33, 0xe0, 0, 0, 0, 0, 0x00, 0x01, 0x00, 0x81, 0xff, 0xff, 0xff, 0xff])
        #expect(try TrapInfo(decoding: bytes) == info)
        #expect(info.dpl == 3 && info.masksEvents)
        #expect(TrapInfo(vector: 1, flags: 1, cs: 0, address: 0).dpl == 1)
        #expect(!TrapInfo(vector: 1, flags: 3, cs: 0, address: 0).masksEvents)
    }

    @Test("iret_context round trip in rax, r11, rcx, flags, rip, cs, rflags, rsp, ss order")
    func iretContext() throws {
        let context = IretContext(rax: 1, r11: 2, rcx: 3, flags: 4, rip: 5, cs: 6, rflags: 7, rsp: 8, ss: 9)
        let bytes = context.encode()
        #expect((0..<9).map { le64(bytes, $0 * 8) } == [1, 2, 3, 4, 5, 6, 7, 8, 9])
        #expect(try IretContext(decoding: bytes) == context)
    }

    @Test("mmu_update, mmuext_op, multicall_entry round trips")
    func mmuStructs() throws {
        let update = MMUUpdate(ptr: 0x1234_5002, val: 0x8000_0000_0000_0067)
        #expect(update.command == 2)
        #expect(try MMUUpdate(decoding: update.encode()) == update)
        #expect(le64(update.encode(), 8) == 0x8000_0000_0000_0067)

        let op = MMUExtOp(cmd: 15, arg1: 0x4a03, arg2: 0xffff_c900_0000_0000)
        let opBytes = op.encode()
        #expect(opBytes.count == 24 && opBytes[0] == 15 && opBytes[4..<8].allSatisfy { $0 == 0 })
        #expect(le64(opBytes, 8) == 0x4a03 && le64(opBytes, 16) == 0xffff_c900_0000_0000)
        #expect(try MMUExtOp(decoding: opBytes) == op)

        let entry = MulticallEntry(op: 14, result: 0xdead, args: [1, 2, 3])
        #expect(entry.args == [1, 2, 3, 0, 0, 0], "padded to six arguments")
        let entryBytes = entry.encode()
        #expect(entryBytes.count == 64 && le64(entryBytes, 8) == 0xdead && le64(entryBytes, 0x20) == 3)
        #expect(try MulticallEntry(decoding: entryBytes) == entry)
        #expect(MulticallEntry(op: 1, args: Array(1...9)).args == Array(1...6), "cut to six")
    }

    @Test("callback_register, vcpu_register_vcpu_info, vcpu_set_singleshot_timer, xen_memory_reservation round trips")
    func argumentStructs() throws {
        let callback = CallbackRegister(type: 2, flags: 1, address: 0xffff_ffff_8100_0200)
        #expect(Array(callback.encode()[0..<4]) == [2, 0, 1, 0])
        #expect(try CallbackRegister(decoding: callback.encode()) == callback)

        let vcpuInfo = RegisterVCPUInfo(mfn: 0x1234, offset: 0x40)
        #expect(vcpuInfo.encode()[8] == 0x40)
        #expect(try RegisterVCPUInfo(decoding: vcpuInfo.encode()) == vcpuInfo)

        let timer = SingleshotTimer(timeoutAbsNs: 1_000_000_123, flags: 1)
        #expect(try SingleshotTimer(decoding: timer.encode()) == timer)

        let reservation = MemoryReservation(extentStart: 0xffff_c900_0000_1000, nrExtents: 512, extentOrder: 9, memFlags: 0x100, domid: 0x7ff0)
        let bytes = reservation.encode()
        #expect(bytes.count == 32 && bytes[16] == 9 && bytes[21] == 1 && bytes[24] == 0xf0 && bytes[25] == 0x7f)
        #expect(try MemoryReservation(decoding: bytes) == reservation)
    }

    @Test("Decoding what Xen's layout puts in every byte and encoding again gives the same bytes, minus padding")
    func bytesRoundTrip() throws {
        typealias RoundTrip = @Sendable ([UInt8]) throws -> [UInt8]
        // (struct, size, padding bytes, decode-then-encode)
        let structs: [(String, Int, Set<Int>, RoundTrip)] = [
            ("trap_info", 16, Set(4..<8), { try TrapInfo(decoding: $0).encode() }),
            ("iret_context", 72, [], { try IretContext(decoding: $0).encode() }),
            ("mmu_update", 16, [], { try MMUUpdate(decoding: $0).encode() }),
            ("mmuext_op", 24, Set(4..<8), { try MMUExtOp(decoding: $0).encode() }),
            ("multicall_entry", 64, [], { try MulticallEntry(decoding: $0).encode() }),
            ("callback_register", 16, Set(4..<8), { try CallbackRegister(decoding: $0).encode() }),
            ("vcpu_register_vcpu_info", 16, Set(12..<16), { try RegisterVCPUInfo(decoding: $0).encode() }),
            ("vcpu_set_singleshot_timer", 16, Set(12..<16), { try SingleshotTimer(decoding: $0).encode() }),
            ("xen_memory_reservation", 32, Set(26..<32), { try MemoryReservation(decoding: $0).encode() }),
            ("vcpu_time_info", 32, Set([4, 5, 6, 7, 0x1e, 0x1f]), { try VCPUTimeInfo(decoding: $0).encode() }),
        ]
        for (name, size, pad, roundTrip) in structs {
            let input = patternBytes(size, seed: UInt8(size))
            let output = try roundTrip(input)
            #expect(output.count == size, "\(name)")
            for index in 0..<min(size, output.count) {
                #expect(output[index] == (pad.contains(index) ? 0 : input[index]), "\(name) byte \(index)")
            }
        }
    }

    @Test("Decoders refuse short input", arguments: [0, 1, 7, 15])
    func shortInput(count: Int) {
        let bytes = [UInt8](repeating: 0xff, count: count)
        #expect(throws: ByteReader.OutOfBounds.self) { try TrapInfo(decoding: bytes) }
        #expect(throws: ByteReader.OutOfBounds.self) { try MMUUpdate(decoding: bytes) }
        #expect(throws: ByteReader.OutOfBounds.self) { try CallbackRegister(decoding: bytes) }
        #expect(throws: ByteReader.OutOfBounds.self) { try IretContext(decoding: bytes) }
        #expect(throws: ByteReader.OutOfBounds.self) { try MulticallEntry(decoding: bytes) }
        #expect(throws: ByteReader.OutOfBounds.self) { try SchedPoll(decoding: bytes) }
        #expect(throws: ByteReader.OutOfBounds.self) { try VCPUTimeInfo(decoding: bytes) }
    }

    @Test("xen_machphys_mapping encodes v_start, v_end, max_mfn")
    func machphysMapping() {
        let bytes = MachphysMapping(virtualStart: 0xffff_8000_0000_0000, virtualEnd: 0xffff_8040_0000_0000, maxMFN: (1 << 35) - 1).encode()
        #expect(bytes.count == 24)
        #expect(le64(bytes, 0) == 0xffff_8000_0000_0000 && le64(bytes, 8) == 0xffff_8040_0000_0000 && le64(bytes, 16) == (1 << 35) - 1)
    }

    @Test("sched_poll decodes {ports handle, nr_ports, timeout}")
    func schedPoll() throws {
        var bytes = [UInt8](repeating: 0xee, count: 24)
        for (index, byte) in [UInt8](arrayLiteral: 0x00, 0x10, 0x40, 0x81, 0xff, 0xff, 0xff, 0xff).enumerated() { bytes[index] = byte }
        for (index, byte) in [UInt8](arrayLiteral: 3, 0, 0, 0).enumerated() { bytes[8 + index] = byte }
        for (index, byte) in [UInt8](arrayLiteral: 0x00, 0xca, 0x9a, 0x3b, 0, 0, 0, 0).enumerated() { bytes[16 + index] = byte }
        let poll = try SchedPoll(decoding: bytes)
        #expect(poll == SchedPoll(ports: 0xffff_ffff_8140_1000, nrPorts: 3, timeout: 1_000_000_000))
    }
}
