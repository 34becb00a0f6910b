import CKVM

/// The general-purpose registers, instruction pointer and flags of a vCPU
/// (`struct kvm_regs`), as a plain Swift value.
public struct Registers: Sendable, Equatable {
    public var rax: UInt64 = 0, rbx: UInt64 = 0, rcx: UInt64 = 0, rdx: UInt64 = 0
    public var rsi: UInt64 = 0, rdi: UInt64 = 0, rsp: UInt64 = 0, rbp: UInt64 = 0
    public var r8: UInt64 = 0, r9: UInt64 = 0, r10: UInt64 = 0, r11: UInt64 = 0
    public var r12: UInt64 = 0, r13: UInt64 = 0, r14: UInt64 = 0, r15: UInt64 = 0
    public var rip: UInt64 = 0, rflags: UInt64 = 0x2

    public init() {}

    init(_ r: kvm_regs) {
        rax = r.rax; rbx = r.rbx; rcx = r.rcx; rdx = r.rdx; rsi = r.rsi; rdi = r.rdi; rsp = r.rsp; rbp = r.rbp
        r8 = r.r8; r9 = r.r9; r10 = r.r10; r11 = r.r11; r12 = r.r12; r13 = r.r13; r14 = r.r14; r15 = r.r15
        rip = r.rip; rflags = r.rflags
    }

    var kvm: kvm_regs {
        kvm_regs(rax: rax, rbx: rbx, rcx: rcx, rdx: rdx, rsi: rsi, rdi: rdi, rsp: rsp, rbp: rbp,
                 r8: r8, r9: r9, r10: r10, r11: r11, r12: r12, r13: r13, r14: r14, r15: r15,
                 rip: rip, rflags: rflags)
    }
}

/// A segment register with its hidden descriptor cache (`struct kvm_segment`).
public struct Segment: Sendable, Equatable {
    public var base: UInt64 = 0
    public var limit: UInt32 = 0
    public var selector: UInt16 = 0
    public var type: UInt8 = 0
    public var present: Bool = false
    public var dpl: UInt8 = 0
    public var db: Bool = false
    public var s: Bool = false
    public var l: Bool = false
    public var g: Bool = false
    public var avl: Bool = false
    public var unusable: Bool = false

    public init(base: UInt64 = 0, limit: UInt32 = 0, selector: UInt16 = 0, type: UInt8 = 0, present: Bool = false,
                dpl: UInt8 = 0, db: Bool = false, s: Bool = false, l: Bool = false, g: Bool = false,
                avl: Bool = false, unusable: Bool = false) {
        self.base = base; self.limit = limit; self.selector = selector; self.type = type; self.present = present
        self.dpl = dpl; self.db = db; self.s = s; self.l = l; self.g = g; self.avl = avl; self.unusable = unusable
    }

    init(_ k: kvm_segment) {
        base = k.base; limit = k.limit; selector = k.selector; type = k.type; present = k.present != 0
        dpl = k.dpl; db = k.db != 0; s = k.s != 0; l = k.l != 0; g = k.g != 0; avl = k.avl != 0
        unusable = k.unusable != 0
    }

    var kvm: kvm_segment {
        var k = kvm_segment()
        k.base = base; k.limit = limit; k.selector = selector; k.type = type; k.present = present ? 1 : 0
        k.dpl = dpl; k.db = db ? 1 : 0; k.s = s ? 1 : 0; k.l = l ? 1 : 0; k.g = g ? 1 : 0; k.avl = avl ? 1 : 0
        k.unusable = unusable ? 1 : 0
        return k
    }
}

/// A descriptor-table register (GDTR, IDTR).
public struct DescriptorTable: Sendable, Equatable {
    public var base: UInt64 = 0
    public var limit: UInt16 = 0
    public init(base: UInt64 = 0, limit: UInt16 = 0) { self.base = base; self.limit = limit }
}

/// Segment, control and descriptor-table registers (`struct kvm_sregs`).
public struct SpecialRegisters: Sendable, Equatable {
    public var cs = Segment(), ds = Segment(), es = Segment(), fs = Segment(), gs = Segment(), ss = Segment()
    public var tr = Segment(), ldt = Segment()
    public var gdt = DescriptorTable(), idt = DescriptorTable()
    public var cr0: UInt64 = 0, cr2: UInt64 = 0, cr3: UInt64 = 0, cr4: UInt64 = 0, cr8: UInt64 = 0
    public var efer: UInt64 = 0
    public var apicBase: UInt64 = 0
    /// KVM's pending-interrupt bitmap; preserved as read.
    var interruptBitmap: [UInt64] = [0, 0, 0, 0]

    public init() {}

    init(_ k: kvm_sregs) {
        cs = Segment(k.cs); ds = Segment(k.ds); es = Segment(k.es); fs = Segment(k.fs); gs = Segment(k.gs)
        ss = Segment(k.ss); tr = Segment(k.tr); ldt = Segment(k.ldt)
        gdt = DescriptorTable(base: k.gdt.base, limit: k.gdt.limit)
        idt = DescriptorTable(base: k.idt.base, limit: k.idt.limit)
        cr0 = k.cr0; cr2 = k.cr2; cr3 = k.cr3; cr4 = k.cr4; cr8 = k.cr8; efer = k.efer; apicBase = k.apic_base
        interruptBitmap = [k.interrupt_bitmap.0, k.interrupt_bitmap.1, k.interrupt_bitmap.2, k.interrupt_bitmap.3]
    }

    var kvm: kvm_sregs {
        var k = kvm_sregs()
        k.cs = cs.kvm; k.ds = ds.kvm; k.es = es.kvm; k.fs = fs.kvm; k.gs = gs.kvm; k.ss = ss.kvm
        k.tr = tr.kvm; k.ldt = ldt.kvm
        k.gdt.base = gdt.base; k.gdt.limit = gdt.limit
        k.idt.base = idt.base; k.idt.limit = idt.limit
        k.cr0 = cr0; k.cr2 = cr2; k.cr3 = cr3; k.cr4 = cr4; k.cr8 = cr8; k.efer = efer; k.apic_base = apicBase
        k.interrupt_bitmap = (interruptBitmap[0], interruptBitmap[1], interruptBitmap[2], interruptBitmap[3])
        return k
    }
}

/// One CPUID leaf as KVM describes it (`struct kvm_cpuid_entry2`).
public struct CPUIDEntry: Sendable, Equatable {
    public var function: UInt32
    public var index: UInt32
    public var flags: UInt32
    public var eax: UInt32, ebx: UInt32, ecx: UInt32, edx: UInt32
    public init(function: UInt32, index: UInt32 = 0, flags: UInt32 = 0, eax: UInt32 = 0, ebx: UInt32 = 0, ecx: UInt32 = 0, edx: UInt32 = 0) {
        self.function = function; self.index = index; self.flags = flags
        self.eax = eax; self.ebx = ebx; self.ecx = ecx; self.edx = edx
    }
    /// KVM_CPUID_FLAG_SIGNIFCANT_INDEX: the leaf has sub-leaves selected by ecx.
    public static let significantIndex: UInt32 = 1
}
