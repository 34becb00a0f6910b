import GuestMemory
import Hypervisor
import Synchronization
import XenABI

/// The backend of a domain's PV console (what xenconsoled does on Xen): drains the
/// guest's output ring (public/io/console.h) when the guest signals its event channel,
/// and feeds input into the input ring.
///
/// The ring indices are guest-controlled: a producer more than a ring's size ahead of
/// the consumer means a broken ring, which is logged and left alone, never trusted.
public final class ConsoleBackend: Sendable {
    public let domain: Domain
    /// Machine address of the ring page.
    public let ring: GuestPhysicalAddress
    private let output: @Sendable ([UInt8]) -> Void
    private let portValue = Atomic<UInt32>(0)
    private let broken = Atomic<Bool>(false)
    private let lock = Mutex<Void>(())
    /// Held by a drain from reading the ring until the output has the bytes, so that
    /// drains on several vCPU threads hand their bytes out one at a time, in ring order.
    /// Lock order: `draining`, then `lock`; `send` takes only `lock`.
    private let draining = Mutex<Void>(())

    /// The event channel the guest signals (start_info.console.domU.evtchn).
    public var port: UInt32 { portValue.load(ordering: .acquiring) }

    /// Connects to the ring at `ring` and binds a host event channel for it.
    public init(domain: Domain, ring: GuestPhysicalAddress, output: @escaping @Sendable ([UInt8]) -> Void) throws(XenError) {
        self.domain = domain
        self.ring = ring
        self.output = output
        let endpoint = HostEndpoint(name: "console") { [weak self] in self?.drain() }
        let port = try domain.bindHostEndpoint(endpoint)
        portValue.store(port, ordering: .releasing)
    }

    private func field(_ offset: Int) -> GuestPhysicalAddress { GuestPhysicalAddress(ring.rawValue + UInt64(offset)) }

    /// Copies everything the guest produced to the output and frees the ring space.
    public func drain() {
        draining.withLock { _ in drainInOrder() }
    }

    private func drainInOrder() {
        let bytes: [UInt8]? = lock.withLock { _ in
            guard !broken.load(ordering: .relaxed) else { return nil }
            let memory = domain.memory
            guard let consumer = try? memory.atomicLoad32(at: field(ConsoleRingLayout.outCons)),
                  let producer = try? memory.atomicLoad32(at: field(ConsoleRingLayout.outProd)) else { return nil }
            let available = producer &- consumer
            guard available <= UInt32(ConsoleRingLayout.outputSize) else {
                broken.store(true, ordering: .relaxed)
                domain.log.log(.warning, "d\(domain.id): console output ring broken (cons \(consumer), prod \(producer)); ignoring it")
                return nil
            }
            guard available > 0 else { return [] }
            var data: [UInt8] = []
            data.reserveCapacity(Int(available))
            var index = consumer
            while index != producer {
                let offset = Int(index & UInt32(ConsoleRingLayout.outputSize - 1))
                let run = min(Int(producer &- index), ConsoleRingLayout.outputSize - offset)
                guard let chunk = try? memory.readBytes(at: field(ConsoleRingLayout.output + offset), count: run) else { return nil }
                data += chunk
                index &+= UInt32(run)
            }
            memory.fence()
            try? memory.atomicStore32(producer, at: field(ConsoleRingLayout.outCons))
            return data
        }
        guard let bytes else { return }
        if !bytes.isEmpty {
            output(bytes)
            domain.notifyFromHost(port: port)
        }
    }

    /// Puts `bytes` into the guest's input ring; returns how many fit.
    @discardableResult
    public func send(_ bytes: [UInt8]) -> Int {
        let written: Int = lock.withLock { _ in
            guard !broken.load(ordering: .relaxed) else { return 0 }
            let memory = domain.memory
            guard let consumer = try? memory.atomicLoad32(at: field(ConsoleRingLayout.inCons)),
                  var producer = try? memory.atomicLoad32(at: field(ConsoleRingLayout.inProd)) else { return 0 }
            let used = producer &- consumer
            guard used <= UInt32(ConsoleRingLayout.inputSize) else {
                broken.store(true, ordering: .relaxed)
                domain.log.log(.warning, "d\(domain.id): console input ring broken (cons \(consumer), prod \(producer)); ignoring it")
                return 0
            }
            let space = ConsoleRingLayout.inputSize - Int(used)
            let count = min(space, bytes.count)
            for byte in bytes.prefix(count) {
                let offset = Int(producer & UInt32(ConsoleRingLayout.inputSize - 1))
                try? memory.write(byte, at: field(ConsoleRingLayout.input + offset))
                producer &+= 1
            }
            memory.fence()
            try? memory.atomicStore32(producer, at: field(ConsoleRingLayout.inProd))
            return count
        }
        if written > 0 { domain.notifyFromHost(port: port) }
        return written
    }
}
