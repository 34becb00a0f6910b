// vcpu_time_info scaling (SharedInfo.swift): Xen's compute_time_scale and the guest's
// pvclock formula.

import Testing
import XenABI

/// Linux's pvclock_scale_delta with the generic mul_u64_u32_shr (include/linux/math64.h):
/// the 96-bit product split in 32-bit halves, shifted right by 32, truncated to 64 bits.
func linuxPVClock(_ info: VCPUTimeInfo, tsc: UInt64) -> UInt64 {
    var delta = tsc &- info.tscTimestamp
    if info.tscShift < 0 { delta >>= UInt64(-Int(info.tscShift)) } else { delta <<= UInt64(info.tscShift) }
    let mul = UInt64(info.tscToSystemMul)
    let high = (delta >> 32) &* mul
    let low = ((delta & 0xffff_ffff) &* mul) >> 32
    return info.systemTime &+ high &+ low
}

@Suite("vcpu_time_info scaling")
struct TimeScaleTests {
    @Test("scale(forTSCHz:) keeps system time within 1 ppm over 10 s", arguments: [
        UInt64(1_000_000_000), 2_596_000_000, 3_700_000_000,
    ])
    func accuracy(hz: UInt64) {
        let (mul, shift) = VCPUTimeInfo.scale(forTSCHz: hz)
        let info = VCPUTimeInfo(tscTimestamp: 1_000, systemTime: 0, tscToSystemMul: mul, tscShift: shift)
        for milliseconds: UInt64 in [1, 1_000, 5_000, 10_000] {
            let tsc = 1_000 + hz * milliseconds / 1_000
            let expected = Double(milliseconds) * 1_000_000
            let actual = Double(info.systemTime(atTSC: tsc))
            #expect(abs(actual - expected) <= expected * 1e-6, "\(hz) Hz after \(milliseconds) ms: \(actual) ns")
        }
    }

    @Test("The multiplier is normalised to [2^31, 2^32) as Xen's compute_time_scale makes it", arguments: [
        (UInt64(1_000_000_000), UInt32(0x8000_0000), Int8(1)),
        (2_596_000_000, 3_308_911_630, -1),
        (3_700_000_000, 2_321_603_943, -1),
        (500_000_000, 0x8000_0000, 2),
        (2_000_000_000, 0x8000_0000, 0),
        (10_000_000_000, 3_435_973_836, -3),
    ])
    func xenScale(hz: UInt64, mul: UInt32, shift: Int8) {
        let scale = VCPUTimeInfo.scale(forTSCHz: hz)
        #expect(scale.mul == mul && scale.shift == shift)
        #expect(scale.mul >= 0x8000_0000)
    }

    @Test("A zero frequency gives a zero scale instead of dividing by zero")
    func zero() {
        #expect(VCPUTimeInfo.scale(forTSCHz: 0) == (0, 0))
    }

    @Test("systemTime(atTSC:) is Linux's pvclock formula", arguments: [
        VCPUTimeInfo(tscTimestamp: 0, systemTime: 0, tscToSystemMul: 0x8000_0000, tscShift: 1),
        VCPUTimeInfo(tscTimestamp: 123_456_789, systemTime: 5_000_000_000, tscToSystemMul: 3_308_911_630, tscShift: -1),
        VCPUTimeInfo(tscTimestamp: 1 << 40, systemTime: 77, tscToSystemMul: 0xffff_ffff, tscShift: 3),
        VCPUTimeInfo(tscTimestamp: 0, systemTime: 1, tscToSystemMul: 2_321_603_943, tscShift: -2),
        VCPUTimeInfo(tscTimestamp: UInt64.max - 10, systemTime: 0, tscToSystemMul: 0x9000_0000, tscShift: 0),
    ])
    func pvclock(info: VCPUTimeInfo) {
        for tsc: UInt64 in [0, 1, 999, 123_456_789, 1 << 32, (1 << 40) + 12_345, 1 << 50, 1 << 60, UInt64.max, 7_777_777_777_777] {
            #expect(info.systemTime(atTSC: tsc) == linuxPVClock(info, tsc: tsc), "tsc \(tsc)")
        }
    }

    @Test("Worked examples")
    func examples() {
        let gigahertz = VCPUTimeInfo(tscTimestamp: 1000, systemTime: 42, tscToSystemMul: 0x8000_0000, tscShift: 1)
        #expect(gigahertz.systemTime(atTSC: 1000) == 42)
        #expect(gigahertz.systemTime(atTSC: 1_000_001_000) == 1_000_000_042)
        let (mul, shift) = VCPUTimeInfo.scale(forTSCHz: 2_596_000_000)
        let debian = VCPUTimeInfo(tscTimestamp: 0, systemTime: 0, tscToSystemMul: mul, tscShift: shift)
        #expect(debian.systemTime(atTSC: 2_596_000_000) == 999_999_999, "one second, truncated")
    }
}
