import XenABI

/// multicall (public/xen.h): a batch of hypercalls, each result written back into
/// its entry.
enum Multicall {
    static func multicall(_ call: inout HypercallInvocation) throws(XenError) -> HypercallOutcome {
        guard !call.inMulticall else { throw .EINVAL }
        let list = call.argument(0)
        let count = call.argument(1)
        var blockAfter = false
        var index: UInt64 = 0
        while index < count {
            let entryAddress = list &+ index &* UInt64(MulticallEntry.size)
            guard let entry = try? MulticallEntry(decoding: try call.copyIn(entryAddress, count: MulticallEntry.size)) else {
                throw .EFAULT
            }
            let result: UInt64
            if entry.op == Hypercall.multicall.rawValue || entry.op == Hypercall.iret.rawValue {
                // Neither nests: a multicall in a multicall, or an iret that would
                // abandon the batch.
                result = XenError.EINVAL.hypercallReturnValue
            } else {
                var inner = HypercallInvocation(vcpu: call.vcpu, number: entry.op, arguments: Array(entry.args.prefix(5)),
                                                context: call.context, inMulticall: true)
                let outcome = Hypercalls.dispatch(&inner)
                call.context.fsBase = inner.context.fsBase
                call.context.gsBase = inner.context.gsBase
                switch outcome {
                case let .value(value): result = value
                case .block: result = 0; blockAfter = true
                case .yield, .poll, .contextReplaced: result = 0
                case .stop: return .stop
                }
            }
            var resultBytes = ByteWriter(size: 8)
            resultBytes.set(result, at: 0)
            try call.copyOut(resultBytes.bytes, to: entryAddress &+ UInt64(MulticallEntry.resultOffset))
            index += 1
        }
        return blockAfter ? .block : .value(0)
    }
}
