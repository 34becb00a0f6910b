/// The CPUID a PV guest sees, built from the host's leaves with what a PV guest
/// must not use hidden (xen/arch/x86/cpu-policy.c, the PV max policy). Both the
/// hardware CPUID (which KVM answers) and the forced-emulation prefix use it.
public struct CPUIDPolicy: Sendable, Equatable {
    public struct Leaf: Sendable, Equatable {
        public var function: UInt32, index: UInt32
        public var eax: UInt32, ebx: UInt32, ecx: UInt32, edx: UInt32
        /// Whether `index` (ecx) selects the sub-leaf.
        public var indexed: Bool
        public init(function: UInt32, index: UInt32 = 0, eax: UInt32 = 0, ebx: UInt32 = 0, ecx: UInt32 = 0, edx: UInt32 = 0, indexed: Bool = false) {
            self.function = function; self.index = index; self.eax = eax; self.ebx = ebx; self.ecx = ecx; self.edx = edx
            self.indexed = indexed
        }
    }

    public private(set) var leaves: [Leaf]

    // Bits hidden from a PV guest.
    static let leaf1ECXHidden: UInt32 = (1 << 3) /* MONITOR */ | (1 << 5) /* VMX */ | (1 << 6) /* SMX */
        | (1 << 7) /* EST */ | (1 << 8) /* TM2 */ | (1 << 2) /* DTES64 */ | (1 << 4) /* DS-CPL */
        | (1 << 15) /* PDCM */ | (1 << 17) /* PCID */ | (1 << 18) /* DCA */ | (1 << 21) /* X2APIC */
        | (1 << 24) /* TSC-deadline */ | (1 << 26) /* XSAVE */ | (1 << 27) /* OSXSAVE */ | (1 << 28) /* AVX, needs XSAVE */
        | (1 << 12) /* FMA, needs XSAVE */ | (1 << 29) /* F16C, needs AVX */
    static let leaf1EDXHidden: UInt32 = (1 << 1) /* VME */ | (1 << 2) /* DE */ | (1 << 3) /* PSE */ | (1 << 9) /* APIC */
        | (1 << 12) /* MTRR */ | (1 << 13) /* PGE */ | (1 << 17) /* PSE36 */ | (1 << 21) /* DS */ | (1 << 22) /* ACPI */
        | (1 << 29) /* TM */ | (1 << 31) /* PBE */ | (1 << 7) /* MCE */ | (1 << 14) /* MCA */
    static let leaf7EBXHidden: UInt32 = (1 << 0) /* FSGSBASE */ | (1 << 1) /* TSC_ADJUST */ | (1 << 5) /* AVX2 */
        | (1 << 7) /* SMEP */ | (1 << 10) /* INVPCID */ | (1 << 11) /* RTM */ | (1 << 4) /* HLE */ | (1 << 14) /* MPX */
        | (1 << 16) /* AVX512F */ | (1 << 17) | (1 << 20) /* SMAP */ | (1 << 21) | (1 << 25) /* PT */ | (1 << 26)
        | (1 << 27) | (1 << 28) | (1 << 30) | (1 << 31)
    static let leaf7ECXHidden: UInt32 = (1 << 2) /* UMIP */ | (1 << 3) /* PKU */ | (1 << 4) /* OSPKE */
        | (1 << 16) /* LA57 */ | (1 << 1) /* AVX512_VBMI */ | (1 << 5) /* WAITPKG */ | (1 << 6) | (1 << 11) | (1 << 12)
        | (1 << 14) | (1 << 22) /* RDPID */ | (1 << 8) /* GFNI: AVX-encoded forms */ | (1 << 9) | (1 << 10)
    static let leaf7EDXHidden: UInt32 = 0xffff_ffff   // speculation controls and AVX-512 bits: none for PV
    static let extended1ECXHidden: UInt32 = (1 << 2) /* SVM */ | (1 << 3) /* ExtApicSpace */ | (1 << 9) /* OSVW */
        | (1 << 10) /* IBS */ | (1 << 15) /* LWP */ | (1 << 19) /* NodeId */ | (1 << 22) /* TOPOEXT */
        | (1 << 23) /* PerfCtrExtCore */ | (1 << 24) | (1 << 26) | (1 << 28) /* PerfCtrExtL2I */ | (1 << 16) /* FMA4 */
        | (1 << 11) /* XOP */ | (1 << 21) /* TBM */
    static let extended1EDXHidden: UInt32 = (1 << 26) /* PAGE1GB */ | (1 << 27) /* RDTSCP */ | (1 << 3) /* PSE */
        | (1 << 13) /* PGE */ | (1 << 17) /* PSE36 */ | (1 << 12) /* MTRR */ | (1 << 1) /* VME */ | (1 << 2) /* DE */
        | (1 << 9) /* APIC */ | (1 << 7) | (1 << 14)

    /// Builds the PV policy from the host's leaves (KVM_GET_SUPPORTED_CPUID).
    public init(hostLeaves: [Leaf]) {
        var result: [Leaf] = []
        for var leaf in hostLeaves {
            switch leaf.function {
            case 0x1:
                leaf.ecx &= ~Self.leaf1ECXHidden
                leaf.ecx |= 1 << 31   // running on a hypervisor
                leaf.edx &= ~Self.leaf1EDXHidden
                leaf.ebx &= 0x0000_ffff   // one logical CPU per package, APIC id 0
                leaf.ebx |= 1 << 16
            case 0x6:
                leaf = Leaf(function: 0x6)   // no thermal or power management
            case 0x7:
                if leaf.index == 0 {
                    leaf.ebx &= ~Self.leaf7EBXHidden
                    leaf.ecx &= ~Self.leaf7ECXHidden
                    leaf.edx &= ~Self.leaf7EDXHidden
                    leaf.eax = 0
                } else {
                    leaf = Leaf(function: 0x7, index: leaf.index, indexed: true)
                }
            case 0xa, 0xd, 0xf, 0x10, 0x12, 0x14, 0x1b:
                // Performance monitoring, XSAVE state, RDT, SGX, PT: none for a PV guest.
                leaf = Leaf(function: leaf.function, index: leaf.index, indexed: leaf.indexed)
            case 0x8000_0001:
                leaf.ecx &= ~Self.extended1ECXHidden
                leaf.edx &= ~Self.extended1EDXHidden
            case 0x8000_0008:
                leaf.ecx &= ~0xf0ff   // no core count, no APIC id size
                leaf.ebx = 0
            case 0x8000_000a, 0x8000_001f, 0x8000_0020, 0x8000_0021, 0x8000_0022:
                leaf = Leaf(function: leaf.function, index: leaf.index, indexed: leaf.indexed)
            case 0x4000_0000...0x4fff_ffff:
                continue   // the host hypervisor's leaves are replaced by Xen's below
            default:
                break
            }
            result.append(leaf)
        }
        result += Self.xenLeaves
        leaves = result
    }

    /// Xen's hypervisor leaves at 0x40000000 ("XenVMMXenVMM", version, hypercall pages).
    static let xenLeaves: [Leaf] = [
        Leaf(function: 0x4000_0000, eax: 0x4000_0002, ebx: 0x566e_6558 /* "XenV" */, ecx: 0x6558_4d4d /* "MMXe" */,
             edx: 0x4d4d_566e /* "nVMM" */),
        Leaf(function: 0x4000_0001, eax: 4 << 16 | 19),
        Leaf(function: 0x4000_0002, eax: 1, ebx: 0x4000_0000),
    ]

    /// The values for CPUID(function, index); unknown leaves read as zero.
    public func lookup(function: UInt32, index: UInt32) -> (eax: UInt32, ebx: UInt32, ecx: UInt32, edx: UInt32) {
        if let leaf = leaves.first(where: { $0.function == function && (!$0.indexed || $0.index == index) }) {
            return (leaf.eax, leaf.ebx, leaf.ecx, leaf.edx)
        }
        return (0, 0, 0, 0)
    }
}
