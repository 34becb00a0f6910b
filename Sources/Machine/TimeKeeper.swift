import GuestMemory
import Hypervisor
import XenABI

/// Keeps a vCPU's vcpu_time_info and the domain's wall clock valid (Xen's
/// update_vcpu_system_time and update_domain_wallclock_time), with the version
/// protocol: odd while the hypervisor writes, even when consistent.
enum TimeKeeper {
    /// Writes a fresh time record for `vcpu`.
    static func update(_ vcpu: VCPU) {
        let domain = vcpu.domain
        let clock = domain.clock
        let now = clock.monotonicNanoseconds()
        let tsc = clock.guestTSC()
        let scale = VCPUTimeInfo.scale(forTSCHz: clock.tscHz)
        let base = vcpu.vcpuInfoAddress.rawValue + UInt64(VCPUInfoLayout.time)
        let memory = domain.memory
        func at(_ offset: Int) -> GuestPhysicalAddress { GuestPhysicalAddress(base + UInt64(offset)) }
        let version: UInt32 = (try? memory.read(at: at(VCPUTimeInfo.Offset.version))) ?? 0
        let odd = (version | 1) &+ (version & 1 == 0 ? 0 : 2)
        try? memory.write(odd, at: at(VCPUTimeInfo.Offset.version))
        memory.fence()
        try? memory.write(tsc, at: at(VCPUTimeInfo.Offset.tscTimestamp))
        try? memory.write(now &- domain.bootTime, at: at(VCPUTimeInfo.Offset.systemTime))
        try? memory.write(scale.mul, at: at(VCPUTimeInfo.Offset.tscToSystemMul))
        try? memory.write(UInt8(bitPattern: scale.shift), at: at(VCPUTimeInfo.Offset.tscShift))
        try? memory.write(VCPUTimeInfo.flagTSCStable, at: at(VCPUTimeInfo.Offset.flags))
        memory.fence()
        try? memory.write(odd &+ 1, at: at(VCPUTimeInfo.Offset.version))
        vcpu.copyTimeInfoToRegisteredArea()
        vcpu.publishTimeBase(systemTime: now &- domain.bootTime, tsc: tsc, tscHz: clock.tscHz)
    }

    /// Writes the wall-clock time at system time 0 into shared_info.
    static func updateWallClock(_ domain: Domain) {
        let memory = domain.memory
        let base = domain.layout.sharedInfo.rawValue
        func at(_ offset: Int) -> GuestPhysicalAddress { GuestPhysicalAddress(base + UInt64(offset)) }
        let (seconds, nanoseconds) = domain.clock.wallClock()
        let elapsed = domain.systemTime()
        var total = seconds &* 1_000_000_000 &+ UInt64(nanoseconds)
        total = total > elapsed ? total - elapsed : 0
        let version: UInt32 = (try? memory.read(at: at(SharedInfoLayout.wcVersion))) ?? 0
        let odd = (version | 1) &+ (version & 1 == 0 ? 0 : 2)
        try? memory.write(odd, at: at(SharedInfoLayout.wcVersion))
        memory.fence()
        try? memory.write(UInt32(truncatingIfNeeded: total / 1_000_000_000), at: at(SharedInfoLayout.wcSec))
        try? memory.write(UInt32(total % 1_000_000_000), at: at(SharedInfoLayout.wcNsec))
        try? memory.write(UInt32(truncatingIfNeeded: (total / 1_000_000_000) >> 32), at: at(SharedInfoLayout.wcSecHi))
        memory.fence()
        try? memory.write(odd &+ 1, at: at(SharedInfoLayout.wcVersion))
    }
}
