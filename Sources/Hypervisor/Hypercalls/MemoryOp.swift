import GuestMemory
import XenABI

/// memory_op (public/memory.h): what a domain can ask about its memory.
enum MemoryOps {
    static func memoryOp(_ call: inout HypercallInvocation) throws(XenError) -> HypercallOutcome {
        let command = call.argument(0) & MemoryOp.commandMask
        let argument = call.argument(1)
        let domain = call.domain
        switch command {
        case MemoryOp.maximumRAMPage:
            return .value(domain.layout.machineToPhysEntries)
        case MemoryOp.currentReservation, MemoryOp.maximumReservation:
            let bytes = try call.copyIn(argument, count: 2)
            let target = UInt16(bytes[0]) | UInt16(bytes[1]) << 8
            guard target == DomainID.`self` || target == domain.id else { throw .EPERM }
            return .value(command == MemoryOp.currentReservation ? domain.layout.ramFrames : domain.maximumFrames)
        case MemoryOp.maximumGPFN:
            let bytes = try call.copyIn(argument, count: 2)
            let target = UInt16(bytes[0]) | UInt16(bytes[1]) << 8
            guard target == DomainID.`self` || target == domain.id else { throw .EPERM }
            return .value(domain.layout.ramFrames - 1)
        case MemoryOp.machphysMapping:
            let entries = domain.layout.machineToPhysEntries
            let bytes = (entries * 8 + pageSize - 1) / pageSize * pageSize
            let start = domain.layout.machineToPhysVirtual
            let mapping = MachphysMapping(virtualStart: start, virtualEnd: start + bytes,
                                          maxMFN: entries - 1)
            try call.copyOut(mapping.encode(), to: argument)
            return .value(0)
        case MemoryOp.memoryMap:
            // The pseudo-physical map: one RAM range covering the domain's pages.
            let header = ByteReader(try call.copyIn(argument, count: MemoryMapLayout.size))
            guard let capacity = try? header.u32(MemoryMapLayout.nrEntries),
                  let buffer = try? header.u64(MemoryMapLayout.buffer) else { throw .EFAULT }
            guard capacity >= 1 else { throw .EINVAL }
            var entry = ByteWriter(size: MemoryMapLayout.e820EntrySize)
            entry.set(UInt64(0), at: 0)
            entry.set(domain.layout.ramFrames * pageSize, at: 8)
            entry.set(MemoryMapLayout.e820RAM, at: 16)
            try call.copyOut(entry.bytes, to: buffer)
            var count = ByteWriter(size: 4)
            count.set(UInt32(1), at: 0)
            try call.copyOut(count.bytes, to: argument + UInt64(MemoryMapLayout.nrEntries))
            return .value(0)
        default:
            domain.log.log(.debug, "\(call.vcpu.name): memory_op \(command) is not implemented: -ENOSYS")
            throw .ENOSYS
        }
    }
}
