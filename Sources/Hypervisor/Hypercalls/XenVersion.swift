import XenABI

/// xen_version (public/version.h).
public enum XenVersion {
    /// The Xen version Domus presents: the guest ABI it implements is Xen 4.19's.
    public static let major: UInt64 = 4
    public static let minor: UInt64 = 19
    public static let extraversion = ".0-domus"
    public static let capabilities = "xen-3.0-x86_64 "

    /// XENFEAT bits reported to a 64-bit PV domU (xen/common/kernel.c), limited to what
    /// Domus implements: PT updates that preserve A/D, available bits in grant mappings,
    /// direct-mapped memory, and page directories above 4 GiB once the guest enables
    /// VMASST_TYPE_pae_extended_cr3. Never writable page tables, auto-translation or a
    /// supervisor-mode kernel.
    static func featureSubmap0(vmAssists: UInt64) -> UInt32 {
        var submap: UInt32 = (1 << UInt32(XenFeature.mmuPtUpdatePreserveAD))
            | (1 << UInt32(XenFeature.gnttabMapAvailBits))
            | (1 << UInt32(XenFeature.directMapped))
        if vmAssists & (1 << VMAssist.typePaeExtendedCR3) != 0 { submap |= 1 << UInt32(XenFeature.paePgdirAbove4GB) }
        return submap
    }

    static func xenVersion(_ call: inout HypercallInvocation) throws(XenError) -> HypercallOutcome {
        let command = call.argument(0)
        let buffer = call.argument(1)
        switch command {
        case XenVersionCommand.version:
            return .value(major << 16 | minor)
        case XenVersionCommand.extraversion:
            try call.copyOut(paddedString(extraversion, length: 16), to: buffer)
            return .value(0)
        case XenVersionCommand.capabilities:
            try call.copyOut(paddedString(capabilities, length: 1024), to: buffer)
            return .value(0)
        case XenVersionCommand.platformParameters:
            var writer = ByteWriter(size: 8)
            writer.set(HypervisorVirtualLayout.hypervisorVirtStart, at: 0)
            try call.copyOut(writer.bytes, to: buffer)
            return .value(0)
        case XenVersionCommand.getFeatures:
            let index = ByteReader(try call.copyIn(buffer, count: 4))
            let submapIndex = (try? index.u32(0)) ?? 0
            // Only submap 0 exists (XENFEAT_NR_SUBMAPS); Xen refuses the others.
            guard submapIndex == 0 else { throw .EINVAL }
            var writer = ByteWriter(size: 4)
            let assists = call.domain.state.withLock { $0.vmAssists }
            writer.set(featureSubmap0(vmAssists: assists), at: 0)
            try call.copyOut(writer.bytes, to: buffer + 4)
            return .value(0)
        case XenVersionCommand.pagesize:
            return .value(4096)
        case XenVersionCommand.guestHandle:
            try call.copyOut(call.domain.handle, to: buffer)
            return .value(0)
        case XenVersionCommand.compileInfo, XenVersionCommand.changeset, XenVersionCommand.commandline,
             XenVersionCommand.buildID:
            // Xen's default policy keeps these from unprivileged domains (xsm_xen_version).
            throw .EPERM
        default:
            call.domain.log.log(.debug, "\(call.vcpu.name): xen_version command \(command) is not implemented: -ENOSYS")
            throw .ENOSYS
        }
    }

    /// A NUL-padded fixed-length string, as Xen's char[N] results are.
    static func paddedString(_ string: String, length: Int) -> [UInt8] {
        var bytes = Array(string.utf8.prefix(length - 1))
        bytes += [UInt8](repeating: 0, count: length - bytes.count)
        return bytes
    }
}
