import Backends
import Foundation
import Hypervisor
import Synchronization
import XenStore

/// `domus-bench xenstore`: XenStore operations per second for a local client (the way
/// the toolstack and the daemon's clients reach the store): READ, WRITE, and
/// transactions (TRANSACTION_START, WRITE, TRANSACTION_END), each as wire messages
/// through `XenStoreService`, beside the same requests handled by the pure `XenStore`
/// core directly (what the service adds: locking, routing, delivery).
enum XenStoreBench {
    static func main(_ arguments: [String]) {
        let operations = value(of: "--operations", in: arguments).map { Int($0) ?? -1 } ?? 20_000
        guard operations > 0, operations <= 10_000_000 else { fail("--operations must be between 1 and 10000000") }

        let service = XenStoreService(log: HypervisorLog())
        let errors = Mutex<Int>(0)
        let connection = service.connectLocal(privileged: true) { reply in
            if reply.type == .error { errors.withLock { $0 += 1 } }
        }
        var core = XenStore()
        let coreConnection = core.connect(domain: 0, privileged: true)

        func message(_ type: XenStoreMessageType, _ transaction: UInt32 = 0, _ parts: [String]) -> XenStoreMessage {
            var payload: [UInt8] = []
            for part in parts { payload += Array(part.utf8) + [0] }
            if type == .write, let last = parts.last { payload = payload.dropLast(last.utf8.count + 1) + Array(last.utf8) }
            return XenStoreMessage(typeRawValue: type.rawValue, requestID: 1, transactionID: transaction, payload: payload)
        }
        func transactionID(_ reply: XenStoreMessage) -> UInt32 {
            UInt32(String(decoding: reply.payload.prefix { $0 != 0 }, as: UTF8.self)) ?? 0
        }

        func rate(_ body: () -> Void) -> Double {
            let start = Date()
            body()
            return Double(operations) / Date().timeIntervalSince(start)
        }

        let keys = (0..<100).map { "/bench/key\($0)" }
        var results: [(String, Double, Double)] = []
        results.append(("WRITE", rate {
            for index in 0..<operations { service.handle(message(.write, 0, [keys[index % 100], "value"]), from: connection) }
        }, rate {
            for index in 0..<operations { _ = core.handle(message(.write, 0, [keys[index % 100], "value"]), from: coreConnection) }
        }))
        results.append(("READ", rate {
            for index in 0..<operations { service.handle(message(.read, 0, [keys[index % 100]]), from: connection) }
        }, rate {
            for index in 0..<operations { _ = core.handle(message(.read, 0, [keys[index % 100]]), from: coreConnection) }
        }))
        // A transaction: start, one write, commit — counted as one operation.
        let lastReply = Mutex<XenStoreMessage?>(nil)
        let transactional = service.connectLocal(privileged: true) { reply in
            if reply.type == .error { errors.withLock { $0 += 1 } }
            lastReply.withLock { $0 = reply }
        }
        results.append(("transaction (start, write, commit)", rate {
            for index in 0..<operations {
                service.handle(message(.transactionStart, 0, [""]), from: transactional)
                let id = transactionID(lastReply.withLock { $0 } ?? XenStoreMessage(typeRawValue: 0))
                service.handle(message(.write, id, [keys[index % 100], "value"]), from: transactional)
                service.handle(message(.transactionEnd, id, ["T"]), from: transactional)
            }
        }, rate {
            for index in 0..<operations {
                let start = core.handle(message(.transactionStart, 0, [""]), from: coreConnection)
                let id = transactionID(start.messages.first?.message ?? XenStoreMessage(typeRawValue: 0))
                _ = core.handle(message(.write, id, [keys[index % 100], "value"]), from: coreConnection)
                _ = core.handle(message(.transactionEnd, id, ["T"]), from: coreConnection)
            }
        }))
        print("XenStore operations per second, local privileged client, \(operations) operations each")
        print("  operation                              XenStoreService   pure core (peer)")
        for (name, service, core) in results {
            let padded = name + String(repeating: " ", count: max(0, 38 - name.count))
            print("  " + padded + String(format: " %15.0f %18.0f", service, core))
        }
        let failed = errors.withLock { $0 }
        if failed > 0 { fail("\(failed) requests got an error reply") }
    }
}
