import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// The KVM subsystem: an open `/dev/kvm`. The only place (with `VirtualMachine` and
/// `VirtualCPU`) where Domus issues ioctls.
public final class KVMSystem: @unchecked Sendable {
    let fd: Int32
    /// Size of each vCPU's shared `kvm_run` area.
    public let vcpuMmapSize: Int

    /// Opens `/dev/kvm` (or `path`) and checks the API version.
    public init(path: String = "/dev/kvm") throws(KVMError) {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw KVMError("open \(path)", errno: errno) }
        let version = ckvm_ioctl_none(fd, CKVM_GET_API_VERSION)
        guard version == 12 else {
            close(fd)
            throw KVMError("KVM_GET_API_VERSION returned \(version), expected 12", errno: EINVAL)
        }
        let size = ckvm_ioctl_none(fd, CKVM_GET_VCPU_MMAP_SIZE)
        guard size > 0 else {
            let error = errno
            close(fd)
            throw KVMError("KVM_GET_VCPU_MMAP_SIZE", errno: error)
        }
        self.fd = fd
        self.vcpuMmapSize = Int(size)
    }

    deinit { close(fd) }

    /// Whether `/dev/kvm` exists and can be opened read-write.
    public static var isAvailable: Bool { access("/dev/kvm", R_OK | W_OK) == 0 }

    /// KVM_CHECK_EXTENSION on the system fd.
    public func checkExtension(_ capability: Int32) -> Int32 {
        ckvm_ioctl_int(fd, CKVM_CHECK_EXTENSION, UInt(capability))
    }

    /// The CPUID leaves KVM can offer a guest on this host.
    public func supportedCPUID() throws(KVMError) -> [CPUIDEntry] {
        var list = ckvm_cpuid_list()
        list.header.nent = 128
        let result = withUnsafeMutablePointer(to: &list) { ckvm_ioctl_ptr(fd, CKVM_GET_SUPPORTED_CPUID, $0) }
        guard result == 0 else { throw KVMError("KVM_GET_SUPPORTED_CPUID", errno: errno) }
        return withUnsafeBytes(of: &list.entries) { raw in
            let entries = raw.bindMemory(to: kvm_cpuid_entry2.self)
            return (0..<Int(min(list.header.nent, 128))).map { index in
                let e = entries[index]
                return CPUIDEntry(function: e.function, index: e.index, flags: e.flags, eax: e.eax, ebx: e.ebx, ecx: e.ecx, edx: e.edx)
            }
        }
    }

    /// Creates a VM.
    public func createVirtualMachine() throws(KVMError) -> VirtualMachine {
        let vmfd = ckvm_ioctl_int(fd, CKVM_CREATE_VM, 0)
        guard vmfd >= 0 else { throw KVMError("KVM_CREATE_VM", errno: errno) }
        return VirtualMachine(fd: vmfd, system: self)
    }
}

/// Capabilities Domus asks about (from <linux/kvm.h>).
public enum KVMCapability {
    public static let syncRegs = Int32(KVM_CAP_SYNC_REGS)
    public static let immediateExit = Int32(KVM_CAP_IMMEDIATE_EXIT)
    public static let getTSCKHz = Int32(KVM_CAP_GET_TSC_KHZ)
    public static let xenHVM = Int32(KVM_CAP_XEN_HVM)
    public static let maxVCPUs = Int32(KVM_CAP_MAX_VCPUS)
}

/// A KVM virtual machine: its memory slots and vCPUs.
public final class VirtualMachine: @unchecked Sendable {
    let fd: Int32
    let system: KVMSystem

    init(fd: Int32, system: KVMSystem) {
        self.fd = fd
        self.system = system
    }

    deinit { close(fd) }

    /// Maps host memory at `hostAddress` as guest-physical [guestPhysical, guestPhysical + size).
    public func setMemoryRegion(slot: UInt32, guestPhysical: UInt64, size: UInt64, hostAddress: UInt64, readOnly: Bool = false) throws(KVMError) {
        var region = kvm_userspace_memory_region(slot: slot, flags: readOnly ? UInt32(KVM_MEM_READONLY) : 0,
                                                 guest_phys_addr: guestPhysical, memory_size: size,
                                                 userspace_addr: hostAddress)
        let result = withUnsafeMutablePointer(to: &region) { ckvm_ioctl_ptr(fd, CKVM_SET_USER_MEMORY_REGION, $0) }
        guard result == 0 else { throw KVMError("KVM_SET_USER_MEMORY_REGION slot \(slot)", errno: errno) }
    }

    /// KVM_SET_TSS_ADDR: Intel hosts need three pages of guest-physical space for
    /// real-mode emulation; harmless elsewhere.
    public func setTSSAddress(_ address: UInt64) throws(KVMError) {
        guard ckvm_ioctl_int(fd, CKVM_SET_TSS_ADDR, UInt(address)) == 0 else {
            throw KVMError("KVM_SET_TSS_ADDR", errno: errno)
        }
    }

    /// Whether KVM can emulate local APICs in the kernel with the TSC-deadline timer
    /// (KVM_CAP_IRQCHIP and KVM_CAP_TSC_DEADLINE_TIMER).
    public var hasLocalAPICTimer: Bool {
        checkExtension(CKVM_CAP_IRQCHIP) > 0 && checkExtension(CKVM_CAP_TSC_DEADLINE_TIMER) > 0
    }

    /// KVM_CREATE_IRQCHIP: a local APIC per vCPU (and a PIC and an I/O APIC, unused)
    /// emulated in the kernel, so that an APIC timer interrupt reaches the guest
    /// without userspace. Only before the first vCPU is created.
    public func createInterruptController() throws(KVMError) {
        guard ckvm_ioctl_none(fd, CKVM_CREATE_IRQCHIP) == 0 else {
            throw KVMError("KVM_CREATE_IRQCHIP", errno: errno)
        }
    }

    /// Creates vCPU `id` with its shared run area mapped.
    public func createVirtualCPU(id: UInt32) throws(KVMError) -> VirtualCPU {
        let vcpufd = ckvm_ioctl_int(fd, CKVM_CREATE_VCPU, UInt(id))
        guard vcpufd >= 0 else { throw KVMError("KVM_CREATE_VCPU \(id)", errno: errno) }
        let mapped = mmap(nil, system.vcpuMmapSize, PROT_READ | PROT_WRITE, MAP_SHARED, vcpufd, 0)
        guard let mapped, mapped != MAP_FAILED else {
            let error = errno
            close(vcpufd)
            throw KVMError("mmap kvm_run of vCPU \(id)", errno: error)
        }
        return VirtualCPU(id: id, fd: vcpufd, run: mapped, runSize: system.vcpuMmapSize, vm: self)
    }

    /// Whether this VM supports `capability` (KVM_CHECK_EXTENSION on the VM fd).
    public func checkExtension(_ capability: Int32) -> Int32 {
        ckvm_ioctl_int(fd, CKVM_CHECK_EXTENSION, UInt(capability))
    }
}

extension KVMSystem {
    /// The TSC frequency KVM gives guests, in kHz (read from a throwaway vCPU).
    public func guestTSCKHz() throws(KVMError) -> UInt64 {
        let vm = try createVirtualMachine()
        let cpu = try vm.createVirtualCPU(id: 0)
        return try cpu.tscKHz()
    }
}
