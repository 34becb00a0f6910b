/// The x86 instructions that raise a software interrupt or exception: int3 (CC), int n
/// (CD ib), into (CE) and int1 (F1).
enum SoftwareInterruptInstruction {
    /// Whether the instruction whose bytes `byte(offset)` gives (nil: unreadable) may be
    /// one, after any legacy or REX prefixes. Unreadable bytes, or prefixes filling the
    /// 15 bytes an instruction may have, count as one: the caller then leaves RIP
    /// alone, which is always safe.
    static func mayBeAt(_ byte: (Int) -> UInt8?) -> Bool {
        for offset in 0..<15 {
            guard let value = byte(offset) else { return true }
            switch value {
            case 0xcc, 0xcd, 0xce, 0xf1: return true
            case 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf0, 0xf2, 0xf3, 0x40...0x4f: continue
            default: return false
            }
        }
        return true
    }
}
