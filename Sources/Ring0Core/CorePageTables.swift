/// Page-table entry bits and Xen's rules for a 64-bit PV guest, as the core needs them.
/// They repeat the host's `XenABI.PTE` and `Hypervisor.PageTableEntryRules` (the core
/// is built alone, without those modules); a unit test checks that they agree.
public enum CorePTE {
    public static let present: UInt64 = 1 << 0
    public static let rw: UInt64 = 1 << 1
    public static let user: UInt64 = 1 << 2
    public static let accessed: UInt64 = 1 << 5
    public static let dirty: UInt64 = 1 << 6
    public static let pse: UInt64 = 1 << 7
    public static let global: UInt64 = 1 << 8
    public static let avail: UInt64 = 0x7 << 9
    public static let guestKernel: UInt64 = 1 << 52
    public static let grantTable: UInt64 = 1 << 62
    public static let nx: UInt64 = 1 << 63
    public static let addressMask: UInt64 = 0x000f_ffff_ffff_f000
    public static let availHigh: UInt64 = 0x7ff0_0000_0000_0000

    /// Flags allowed in present L2–L4 entries.
    public static let allowedUpper: UInt64 = present | rw | user | accessed | dirty | avail | availHigh | nx
    /// Flags allowed in present L1 entries of a domain without I/O rights.
    public static let allowedL1: UInt64 = (allowedUpper | global) & ~grantTable

    /// L4 slots that belong to the hypervisor (256..<272).
    public static let firstHypervisorSlot: UInt64 = 256
    public static let endHypervisorSlot: UInt64 = 272

    @inline(__always) static func frame(_ entry: UInt64) -> UInt64 { (entry & addressMask) >> 12 }

    @inline(__always) static func flagsAllowed(_ entry: UInt64, level: UInt64) -> Bool {
        let allowed = level == 1 ? allowedL1 : allowedUpper
        return entry & ~addressMask & ~allowed == 0
    }

    /// The entry as stored for a 64-bit PV guest (Xen's adjust_guest_lNe).
    @inline(__always) static func adjust(_ entry: UInt64, level: UInt64) -> UInt64 {
        guard entry & present != 0 else { return entry }
        switch level {
        case 1: return entry & user != 0 ? entry : entry | user | guestKernel
        case 4: return entry | user | accessed
        default: return entry | user
        }
    }
}

/// Reads guest-virtual memory the way the guest's kernel sees it, by walking its page
/// tables through the direct map of RAM. Nothing here can fault: every table and the
/// final frame must be RAM, and addresses in the hypervisor's range are refused.
struct GuestView {
    let ram: Words
    let ramFrames: UInt64

    /// Canonical, and outside Xen's reserved range [0xffff800000000000, 0xffff880000000000).
    @inline(__always) static func isGuestAddress(_ address: UInt64) -> Bool {
        let top = address >> 47
        guard top == 0 || top == 0x1ffff else { return false }
        return address < 0xffff_8000_0000_0000 || address >= 0xffff_8800_0000_0000
    }

    /// The guest-physical address of `address` under the L4 at `root` (a CR3 value), or
    /// nil when it is not mapped to RAM, not user-accessible, or not the guest's; with
    /// `write`, also when it is not writable at every level (Xen's copy_to_guest).
    func translate(_ address: UInt64, root: UInt64, write: Bool = false) -> UInt64? {
        guard Self.isGuestAddress(address) else { return nil }
        let required = write ? CorePTE.present | CorePTE.user | CorePTE.rw : CorePTE.present | CorePTE.user
        var table = root & CorePTE.addressMask
        var shift: UInt64 = 39
        while true {
            guard table >> 12 < ramFrames else { return nil }
            let entry = ram.u64(table &+ ((address >> shift) & 511) &* 8)
            guard entry & required == required else { return nil }
            if shift > 12 && entry & CorePTE.pse != 0 { return nil }
            table = entry & CorePTE.addressMask
            if shift == 12 { break }
            shift &-= 9
        }
        guard table >> 12 < ramFrames else { return nil }
        return table | (address & 0xfff)
    }

    /// The guest-physical address of the L1 entry that maps `address` under the L4 at
    /// `root` (a CR3 value): the walk through present, non-superpage L4–L2 entries in
    /// RAM, as the host's `GuestPageWalker.l1EntryAddress`. Nil when there is none.
    func l1EntryAddress(_ address: UInt64, root: UInt64) -> UInt64? {
        guard Self.isGuestAddress(address) else { return nil }
        var table = root & CorePTE.addressMask
        var shift: UInt64 = 39
        while shift > 12 {
            guard table >> 12 < ramFrames else { return nil }
            let entry = ram.u64(table &+ ((address >> shift) & 511) &* 8)
            guard entry & CorePTE.present != 0, entry & CorePTE.pse == 0 else { return nil }
            table = entry & CorePTE.addressMask
            shift &-= 9
        }
        guard table >> 12 < ramFrames else { return nil }
        return table &+ ((address >> 12) & 511) &* 8
    }

    /// The 8-byte word at an 8-byte-aligned guest-virtual address.
    func readWord(_ address: UInt64, root: UInt64) -> UInt64? {
        guard address & 7 == 0, let physical = translate(address, root: root) else { return nil }
        return ram.u64(physical)
    }
}
