// The PV console backend (Backends/ConsoleBackend.swift): struct xencons_interface of
// public/io/console.h, out[2048] drained to the output, in[1024] fed by `send`.

import Backends
import Foundation
import GuestMemory
import Hypervisor
import Synchronization
import Testing
import XenABI

/// A console ring in the fixture's RAM and the backend serving it.
struct ConsoleRing {
    let test: BackendDomain
    let backend: ConsoleBackend
    let output = Collector<UInt8>()

    init(test: BackendDomain) throws {
        self.test = test
        let output = self.output
        backend = try ConsoleBackend(domain: test.domain, ring: BackendDomain.address(BackendDomain.consoleRingPFN)) { bytes in
            output.append(contentsOf: bytes)
        }
    }

    func address(_ offset: Int) -> GuestPhysicalAddress { BackendDomain.address(BackendDomain.consoleRingPFN, offset) }

    func index(_ offset: Int) throws -> UInt32 { try test.memory.read(UInt32.self, at: address(offset)) }
    func setIndex(_ offset: Int, _ value: UInt32) throws { try test.memory.write(value, at: address(offset)) }

    var outputConsumer: UInt32 { get throws { try index(ConsoleRingLayout.outCons) } }
    var outputProducer: UInt32 { get throws { try index(ConsoleRingLayout.outProd) } }
    var inputConsumer: UInt32 { get throws { try index(ConsoleRingLayout.inCons) } }
    var inputProducer: UInt32 { get throws { try index(ConsoleRingLayout.inProd) } }

    /// Starts both output indices at `start`.
    func startOutput(at start: UInt32) throws {
        try setIndex(ConsoleRingLayout.outCons, start)
        try setIndex(ConsoleRingLayout.outProd, start)
    }

    /// Starts both input indices at `start`.
    func startInput(at start: UInt32) throws {
        try setIndex(ConsoleRingLayout.inCons, start)
        try setIndex(ConsoleRingLayout.inProd, start)
    }

    /// What the guest's console driver does: bytes at out[MASK(prod)], then out_prod advanced.
    func guestWrite(_ bytes: [UInt8]) throws {
        var producer = try outputProducer
        for byte in bytes {
            try test.memory.write(byte, at: address(ConsoleRingLayout.output + Int(producer & 2047)))
            producer &+= 1
        }
        try setIndex(ConsoleRingLayout.outProd, producer)
    }

    /// in[] from index `start` for `count` bytes, following the ring.
    func input(from start: UInt32, count: Int) throws -> [UInt8] {
        try (0..<count).map { try test.memory.read(UInt8.self, at: address(ConsoleRingLayout.input + Int((start &+ UInt32($0)) & 1023))) }
    }
}

private func text(_ string: String) -> [UInt8] { Array(string.utf8) }
private func pattern(_ count: Int, seed: UInt8 = 0) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 * 13) &+ seed } }

@Suite("Console backend: the output ring")
struct ConsoleOutputTests {
    @Test("The backend binds a host event channel the guest sees as an interdomain port")
    func binding() throws {
        let test = try BackendDomain()
        let console = try ConsoleRing(test: test)
        #expect(console.backend.port == 1)
        #expect(console.backend.ring == GuestPhysicalAddress(BackendDomain.consoleRingPFN << 12))
        let state = test.domain.state.withLock { $0.events[1]?.state }
        guard case let .host(endpoint) = state else {
            Issue.record("port 1 is \(String(describing: state))")
            return
        }
        #expect(endpoint.name == "console")
    }

    @Test("Drains what the guest wrote, advances out_cons and notifies the guest")
    func drain() throws {
        let test = try BackendDomain()
        let console = try ConsoleRing(test: test)
        try console.guestWrite(text("Linux version 6.1\n"))
        console.backend.drain()
        #expect(console.output.take() == text("Linux version 6.1\n"))
        #expect(try console.outputConsumer == 18)
        #expect(try console.outputProducer == 18)
        #expect(test.isPending(console.backend.port))
        #expect(try test.upcallPending() == 1)
        // More, later.
        try test.clearPending()
        try console.guestWrite(text("more"))
        console.backend.drain()
        #expect(console.output.take() == text("more"))
        #expect(try console.outputConsumer == 22)
        #expect(test.isPending(console.backend.port))
    }

    @Test("An empty ring produces no output and no notification")
    func empty() throws {
        let test = try BackendDomain()
        let console = try ConsoleRing(test: test)
        try console.startOutput(at: 12345)
        console.backend.drain()
        #expect(console.output.all.isEmpty)
        #expect(try console.outputConsumer == 12345)
        #expect(!test.isPending(console.backend.port))
    }

    @Test("Output across the ring's end and across 2^32 comes out in order", arguments: [
        UInt32(2040), 2047, 3996, 0xffff_fff8, 0xffff_ffff, 0xffff_f800,
    ])
    func wrapAround(start: UInt32) throws {
        let test = try BackendDomain()
        let console = try ConsoleRing(test: test)
        try console.startOutput(at: start)
        let data = pattern(300, seed: 7)
        try console.guestWrite(data)
        console.backend.drain()
        #expect(console.output.take() == data)
        #expect(try console.outputConsumer == start &+ 300)
        #expect(test.isPending(console.backend.port))
    }

    @Test("A full ring (2048 bytes) is drained whole, starting anywhere", arguments: [UInt32(0), 1000, 0xffff_fc00])
    func fullRing(start: UInt32) throws {
        let test = try BackendDomain()
        let console = try ConsoleRing(test: test)
        try console.startOutput(at: start)
        let data = pattern(2048, seed: 1)
        try console.guestWrite(data)
        #expect(try console.outputProducer &- console.outputConsumer == 2048)
        console.backend.drain()
        #expect(console.output.take() == data)
        #expect(try console.outputConsumer == start &+ 2048)
    }

    @Test("A producer more than 2048 ahead breaks the ring: logged, and never read again", arguments: [UInt32(2049), 0x8000_0000, 0xffff_ffff])
    func broken(ahead: UInt32) throws {
        let test = try BackendDomain()
        let console = try ConsoleRing(test: test)
        try console.startOutput(at: 100)
        try console.setIndex(ConsoleRingLayout.outProd, 100 &+ ahead)
        console.backend.drain()
        #expect(console.output.all.isEmpty)
        #expect(try console.outputConsumer == 100)
        #expect(!test.isPending(console.backend.port))
        #expect(test.logged("d1: console output ring broken (cons 100, prod \(100 &+ ahead)); ignoring it"))
        // The guest puts sane indices back and writes: the backend no longer looks.
        try console.startOutput(at: 0)
        try console.guestWrite(text("hello"))
        console.backend.drain()
        #expect(console.output.all.isEmpty)
        #expect(try console.outputConsumer == 0)
        // Nor does it feed input.
        #expect(console.backend.send(text("x")) == 0)
        #expect(try console.inputProducer == 0)
        #expect(!test.isPending(console.backend.port))
        #expect(test.log.lines().filter { $0.contains("console output ring broken") }.count == 1, "logged once")
    }

    @Test("The guest's EVTCHNOP_send on the console port drains the ring")
    func guestSend() throws {
        let test = try BackendDomain()
        let console = try ConsoleRing(test: test)
        try console.startOutput(at: 2000)
        try console.guestWrite(text("[    0.000000] Booting paravirtualized kernel on Xen\n"))
        #expect(try test.send(port: console.backend.port) == 0)
        #expect(console.output.take() == text("[    0.000000] Booting paravirtualized kernel on Xen\n"))
        #expect(try console.outputConsumer == 2053)
        #expect(test.isPending(console.backend.port))
        // A send with nothing new is harmless.
        try test.clearPending()
        #expect(try test.send(port: console.backend.port) == 0)
        #expect(console.output.all.isEmpty)
        #expect(!test.isPending(console.backend.port))
    }

    @Test("Once the backend is gone, a send on its port does nothing")
    func backendGone() throws {
        let test = try BackendDomain()
        var console: ConsoleRing? = try ConsoleRing(test: test)
        let port = try #require(console?.backend.port)
        let output = try #require(console?.output)
        try console?.guestWrite(text("late"))
        console = nil
        #expect(try test.send(port: port) == 0)
        #expect(output.all.isEmpty)
        #expect(try test.memory.read(UInt32.self, at: BackendDomain.address(BackendDomain.consoleRingPFN, ConsoleRingLayout.outCons)) == 0)
    }
}

@Suite("Console backend: the input ring")
struct ConsoleInputTests {
    @Test("send writes into in[], advances in_prod and notifies")
    func send() throws {
        let test = try BackendDomain()
        let console = try ConsoleRing(test: test)
        #expect(console.backend.send(text("root\n")) == 5)
        #expect(try console.inputProducer == 5)
        #expect(try console.inputConsumer == 0)
        #expect(try console.input(from: 0, count: 5) == text("root\n"))
        #expect(test.isPending(console.backend.port))
        try test.clearPending()
        #expect(console.backend.send(text("ls")) == 2)
        #expect(try console.input(from: 5, count: 2) == text("ls"))
        #expect(try console.inputProducer == 7)
        #expect(test.isPending(console.backend.port))
    }

    @Test("send returns how many fit, and nothing when the ring is full")
    func partial() throws {
        let test = try BackendDomain()
        let console = try ConsoleRing(test: test)
        try console.setIndex(ConsoleRingLayout.inCons, 0)
        try console.setIndex(ConsoleRingLayout.inProd, 1000)
        #expect(console.backend.send(pattern(100)) == 24)
        #expect(try console.inputProducer == 1024)
        #expect(try console.input(from: 1000, count: 24) == Array(pattern(100).prefix(24)))
        #expect(test.isPending(console.backend.port))
        try test.clearPending()
        #expect(console.backend.send(text("x")) == 0)
        #expect(try console.inputProducer == 1024)
        #expect(!test.isPending(console.backend.port), "nothing sent, nothing to tell")
        #expect(console.backend.send([]) == 0)
        // The guest consumes some: room again.
        try console.setIndex(ConsoleRingLayout.inCons, 10)
        #expect(console.backend.send(pattern(20, seed: 3)) == 10)
        #expect(try console.input(from: 1024, count: 10) == Array(pattern(20, seed: 3).prefix(10)))
    }

    @Test("Input across the ring's end and across 2^32", arguments: [UInt32(1000), 0xffff_fff0, UInt32.max])
    func wrapAround(start: UInt32) throws {
        let test = try BackendDomain()
        let console = try ConsoleRing(test: test)
        try console.startInput(at: start)
        let data = pattern(40, seed: 9)
        #expect(console.backend.send(data) == 40)
        #expect(try console.inputProducer == start &+ 40)
        #expect(try console.input(from: start, count: 40) == data)
        // A whole ring's worth fits once the guest consumed everything.
        try console.setIndex(ConsoleRingLayout.inCons, start &+ 40)
        #expect(console.backend.send(pattern(2000)) == 1024)
        #expect(try console.inputProducer == start &+ 40 &+ 1024)
        #expect(try console.input(from: start &+ 40, count: 1024) == Array(pattern(2000).prefix(1024)))
    }

    @Test("An input producer more than 1024 ahead breaks the ring: logged, output ignored too")
    func broken() throws {
        let test = try BackendDomain()
        let console = try ConsoleRing(test: test)
        try console.setIndex(ConsoleRingLayout.inCons, 5)
        try console.setIndex(ConsoleRingLayout.inProd, 5 + 1025)
        #expect(console.backend.send(text("x")) == 0)
        #expect(try console.inputProducer == 1030)
        #expect(!test.isPending(console.backend.port))
        #expect(test.logged("d1: console input ring broken (cons 5, prod 1030); ignoring it"))
        try console.guestWrite(text("out"))
        console.backend.drain()
        #expect(console.output.all.isEmpty)
        #expect(try console.outputConsumer == 0)
    }
}

@Suite("Console backend: drains on several vCPU threads")
struct ConsoleConcurrencyTests {
    /// Two vCPUs notify one after the other. The output must get the bytes one drain at
    /// a time, in ring order: a second drain must not reach the output while the first
    /// is still handing its bytes out (else it can overtake it). The first output call
    /// starts the second drain on another thread and gives it plenty of time to get in
    /// (a bounded spin, no sleep); with drains serialised it cannot, and the spin runs out.
    @Test("A second drain waits until the first has handed its bytes out")
    func drainsAreSerialised() throws {
        let test = try BackendDomain()
        let memory = test.memory
        let ring = BackendDomain.address(BackendDomain.consoleRingPFN)
        let chunks = Collector<[UInt8]>()
        let inOutput = Atomic<Int>(0)
        let overlapped = Atomic<Bool>(false)
        let backendBox = Mutex<ConsoleBackend?>(nil)
        let second = DispatchGroup()
        let backend = try ConsoleBackend(domain: test.domain, ring: ring) { bytes in
            if inOutput.add(1, ordering: .acquiringAndReleasing).newValue > 1 { overlapped.store(true, ordering: .relaxed) }
            defer { inOutput.subtract(1, ordering: .acquiringAndReleasing) }
            chunks.append(bytes)
            guard bytes == Array("first".utf8), let backend = backendBox.withLock({ $0 }) else { return }
            // The guest, on another vCPU, writes more and notifies.
            for (index, byte) in "second".utf8.enumerated() {
                try? memory.write(byte, at: GuestPhysicalAddress(ring.rawValue + UInt64(ConsoleRingLayout.output + 5 + index)))
            }
            try? memory.atomicStore32(11, at: GuestPhysicalAddress(ring.rawValue + UInt64(ConsoleRingLayout.outProd)))
            let started = Atomic<Bool>(false)
            second.enter()
            Thread {
                started.store(true, ordering: .releasing)
                backend.drain()
                second.leave()
            }.start()
            while !started.load(ordering: .acquiring) { sched_yield() }
            var spins = 0
            while chunks.all.count < 2 && spins < 20_000 { sched_yield(); spins += 1 }
        }
        backendBox.withLock { $0 = backend }
        for (index, byte) in "first".utf8.enumerated() {
            try memory.write(byte, at: GuestPhysicalAddress(ring.rawValue + UInt64(ConsoleRingLayout.output + index)))
        }
        try memory.write(UInt32(5), at: GuestPhysicalAddress(ring.rawValue + UInt64(ConsoleRingLayout.outProd)))
        backend.drain()
        second.wait()
        let overlap = overlapped.load(ordering: .relaxed)
        #expect(!overlap, "two drains were in the output at once")
        #expect(chunks.all == [Array("first".utf8), Array("second".utf8)])
        #expect(try memory.read(UInt32.self, at: GuestPhysicalAddress(ring.rawValue + UInt64(ConsoleRingLayout.outCons))) == 11)
    }
}
