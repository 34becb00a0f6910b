/// The guest-visible CPU state of a vCPU at an entry into the hypervisor: what a
/// hypercall reads its arguments from and what a trap bounce rewrites. The machine
/// layer fills it from KVM at each exit and writes back what changed; the hypervisor
/// core never touches KVM.
public struct GuestContext: Sendable, Equatable {
    public var rax: UInt64 = 0, rbx: UInt64 = 0, rcx: UInt64 = 0, rdx: UInt64 = 0
    public var rsi: UInt64 = 0, rdi: UInt64 = 0, rsp: UInt64 = 0, rbp: UInt64 = 0
    public var r8: UInt64 = 0, r9: UInt64 = 0, r10: UInt64 = 0, r11: UInt64 = 0
    public var r12: UInt64 = 0, r13: UInt64 = 0, r14: UInt64 = 0, r15: UInt64 = 0
    public var rip: UInt64 = 0
    public var rflags: UInt64 = RFlags.fixed | RFlags.interrupt
    /// Code and stack selectors as the guest sees them (RPL 3: the guest always runs in ring 3).
    public var cs: UInt16 = 0
    public var ss: UInt16 = 0
    public var ds: UInt16 = 0
    public var es: UInt16 = 0
    public var fs: UInt16 = 0
    public var gs: UInt16 = 0
    /// The active FS and GS bases in the hardware.
    public var fsBase: UInt64 = 0
    public var gsBase: UInt64 = 0

    public init() {}

    /// Hypercall arguments 1–5 (rdi, rsi, rdx, r10, r8), as Xen's x86-64 ABI passes them.
    public var hypercallArguments: (UInt64, UInt64, UInt64, UInt64, UInt64) { (rdi, rsi, rdx, r10, r8) }

    /// General register by x86 encoding number (0 = rax ... 15 = r15), for the instruction emulator.
    public func register(_ number: Int) -> UInt64 {
        switch number & 15 {
        case 0: return rax
        case 1: return rcx
        case 2: return rdx
        case 3: return rbx
        case 4: return rsp
        case 5: return rbp
        case 6: return rsi
        case 7: return rdi
        case 8: return r8
        case 9: return r9
        case 10: return r10
        case 11: return r11
        case 12: return r12
        case 13: return r13
        case 14: return r14
        default: return r15
        }
    }

    /// Sets the general register with x86 encoding `number`.
    public mutating func setRegister(_ number: Int, _ value: UInt64) {
        switch number & 15 {
        case 0: rax = value
        case 1: rcx = value
        case 2: rdx = value
        case 3: rbx = value
        case 4: rsp = value
        case 5: rbp = value
        case 6: rsi = value
        case 7: rdi = value
        case 8: r8 = value
        case 9: r9 = value
        case 10: r10 = value
        case 11: r11 = value
        case 12: r12 = value
        case 13: r13 = value
        case 14: r14 = value
        default: r15 = value
        }
    }
}

/// RFLAGS bits.
public enum RFlags {
    public static let carry: UInt64 = 1 << 0
    public static let fixed: UInt64 = 1 << 1
    public static let parity: UInt64 = 1 << 2
    public static let adjust: UInt64 = 1 << 4
    public static let zero: UInt64 = 1 << 6
    public static let sign: UInt64 = 1 << 7
    public static let trap: UInt64 = 1 << 8
    public static let interrupt: UInt64 = 1 << 9
    public static let direction: UInt64 = 1 << 10
    public static let overflow: UInt64 = 1 << 11
    public static let iopl: UInt64 = 3 << 12
    public static let nestedTask: UInt64 = 1 << 14
    public static let resume: UInt64 = 1 << 16
    public static let virtual8086: UInt64 = 1 << 17
    public static let alignmentCheck: UInt64 = 1 << 18
    public static let virtualInterrupt: UInt64 = 1 << 19
    public static let virtualInterruptPending: UInt64 = 1 << 20
    public static let id: UInt64 = 1 << 21
    /// Flags a guest may set through iret (Xen's X86_EFLAGS_* arithmetic and control bits).
    public static let guestSettable: UInt64 = carry | parity | adjust | zero | sign | trap | interrupt | direction
        | overflow | nestedTask | alignmentCheck | id
}
