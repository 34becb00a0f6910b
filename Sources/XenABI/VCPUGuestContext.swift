/// struct vcpu_guest_context for x86-64 (public/arch-x86/xen.h): what VCPUOP_initialise
/// starts a vCPU from. Only the fields Domus uses are decoded; offsets are the C
/// layout's (5 168 bytes).
public struct VCPUGuestContext: Sendable, Equatable {
    public static let size = 5168

    /// VGCF_* flags.
    public var flags: UInt64
    /// struct cpu_user_regs: general registers in x86 encoding order (rax, rcx, rdx,
    /// rbx, rsp, rbp, rsi, rdi, r8 ... r15), then rip and rflags.
    public var registers: [UInt64]
    public var rip: UInt64
    public var rflags: UInt64
    /// trap_ctxt[256]: one struct trap_info per vector (an address of 0: none).
    public var traps: [TrapInfo]
    public var ldtBase: UInt64
    public var ldtEntries: UInt64
    public var gdtFrames: [UInt64]
    public var gdtEntries: UInt64
    public var kernelSS: UInt64
    public var kernelSP: UInt64
    public var controlRegisters: [UInt64]
    public var debugRegisters: [UInt64]
    public var eventCallback: UInt64
    public var failsafeCallback: UInt64
    public var syscallCallback: UInt64
    public var vmAssist: UInt64
    public var fsBase: UInt64
    public var gsBaseKernel: UInt64
    public var gsBaseUser: UInt64

    /// VGCF_i387_valid: fpu_ctxt holds an FXSAVE image.
    public static let fpuValid: UInt64 = 1 << 0
    /// VGCF_in_kernel: the vCPU starts in guest kernel mode.
    public static let inKernel: UInt64 = 1 << 2
    /// VGCF_failsafe_disables_events, VGCF_syscall_disables_events.
    public static let failsafeMasksEvents: UInt64 = 1 << 3
    public static let syscallMasksEvents: UInt64 = 1 << 4

    /// Byte offsets in struct cpu_user_regs of rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi,
    /// r8 ... r15.
    static let registerOffsets = [80, 88, 96, 40, 152, 32, 104, 112, 72, 64, 56, 48, 24, 16, 8, 0]

    public init(decoding bytes: [UInt8]) throws(ByteReader.OutOfBounds) {
        let reader = ByteReader(bytes)
        let userRegs = 520
        flags = try reader.u64(512)
        registers = []
        for offset in Self.registerOffsets { registers.append(try reader.u64(userRegs + offset)) }
        rip = try reader.u64(userRegs + 128)
        rflags = try reader.u64(userRegs + 144)
        traps = []
        for vector in 0..<256 {
            let base = 720 + vector * TrapInfo.size
            traps.append(TrapInfo(vector: try reader.u8(base), flags: try reader.u8(base + 1), cs: try reader.u16(base + 2),
                                  address: try reader.u64(base + 8)))
        }
        ldtBase = try reader.u64(4816)
        ldtEntries = try reader.u64(4824)
        gdtFrames = []
        for index in 0..<16 { gdtFrames.append(try reader.u64(4832 + index * 8)) }
        gdtEntries = try reader.u64(4960)
        kernelSS = try reader.u64(4968)
        kernelSP = try reader.u64(4976)
        controlRegisters = []
        for index in 0..<8 { controlRegisters.append(try reader.u64(4984 + index * 8)) }
        debugRegisters = []
        for index in 0..<8 { debugRegisters.append(try reader.u64(5048 + index * 8)) }
        eventCallback = try reader.u64(5112)
        failsafeCallback = try reader.u64(5120)
        syscallCallback = try reader.u64(5128)
        vmAssist = try reader.u64(5136)
        fsBase = try reader.u64(5144)
        gsBaseKernel = try reader.u64(5152)
        gsBaseUser = try reader.u64(5160)
    }
}
