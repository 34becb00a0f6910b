/// The PV MMU hypercalls the core completes inside the VM: the common, simple cases of
/// mmu_update and mmuext_op, with exactly the host's validation
/// (`Hypervisor.PageTableUpdates`, `MMUOps`). Anything else — an upper table whose
/// type must change with validation, or that would lose its last reference, an error
/// the guest must see — is left to the host untouched ("deferred"), and the host
/// handles the whole hypercall as if the core did not exist. Each operation here
/// therefore checks everything before its first change; only a batch may hand the
/// host its rest after completing a part (`Core.continueInHost`).
struct FastMMU {
    let ram: Words
    let pages: PageInfoTable
    let ramFrames: UInt64

    // MARK: mmu_update, one request

    /// Applies one MMU_NORMAL_PT_UPDATE or MMU_PT_UPDATE_PRESERVE_AD request to a
    /// validated page table. Returns false (nothing changed) when the host must do it.
    /// Called with the core lock held.
    func updateEntry(ptr: UInt64, value: UInt64) -> Bool {
        let command = ptr & 3
        guard command == 0 || command == 2 else { return false }
        let address = ptr & ~7
        let frame = address >> 12
        guard frame < ramFrames else { return false }
        let type = pages.type(frame)
        guard pages.typeCount(frame) > 0, type >= PageTypeCode.l1, type <= PageTypeCode.l4 else { return false }
        let level = UInt64(type &- PageTypeCode.l1) &+ 1
        let index = (address & 0xfff) >> 3
        if level == 4 && index >= CorePTE.firstHypervisorSlot && index < CorePTE.endHypervisorSlot { return false }

        let old = ram.atomicLoad(address)
        let new = command == 2 ? value | (old & (CorePTE.accessed | CorePTE.dirty)) : value
        return replace(at: address, old: old, with: new, level: level)
    }

    /// Changes one entry of a validated L1 in use to `transform(old)`, as the host's
    /// writable page-table emulation does (`PageTableUpdates.modify` with `requireL1`).
    /// Returns the old entry, or nil (nothing changed) when the host must do it.
    /// Called with the core lock held.
    func modifyL1Entry(at address: UInt64, _ transform: (UInt64) -> UInt64) -> UInt64? {
        let frame = address >> 12
        guard address & 7 == 0, frame < ramFrames, pages.typeCount(frame) > 0, pages.type(frame) == PageTypeCode.l1 else {
            return nil
        }
        let old = ram.atomicLoad(address)
        return replace(at: address, old: old, with: transform(old), level: 1) ? old : nil
    }

    /// Replaces entry `old` at `address` of a table of `level` with `new`, taking and
    /// dropping references as the host does; false (nothing changed) when the host
    /// must do it. Everything is checked before anything changes.
    private func replace(at address: UInt64, old: UInt64, with new: UInt64, level: UInt64) -> Bool {
        if new == old { return true }
        guard canAcquire(new, level: level), canRelease(old, level: level, acquiring: new) else { return false }
        acquire(new, level: level)
        guard ram.compareExchange(address, expected: old, desired: CorePTE.adjust(new, level: level)) == old else {
            // The hardware set A/D meanwhile: undo, and let the host retry.
            release(new, level: level)
            return false
        }
        release(old, level: level)
        return true
    }

    /// Whether `entry` at `level` may be installed without the host: present entries
    /// with allowed flags, pointing at RAM whose type reference needs no validation.
    func canAcquire(_ entry: UInt64, level: UInt64) -> Bool {
        guard entry & CorePTE.present != 0 else { return true }
        guard CorePTE.flagsAllowed(entry, level: level) else { return false }
        let target = CorePTE.frame(entry)
        guard target < ramFrames else { return false }   // Xen pages, or an error: the host's
        let count = pages.typeCount(target)
        if level == 1 {
            guard entry & CorePTE.rw != 0 else { return true }
            if count == 0 { return true }   // becomes writable: no validation needed
            return pages.type(target) == PageTypeCode.writable && count < UInt32.max &- 1
        }
        // An upper entry takes a reference on a table one level down, already validated.
        return count > 0 && count < UInt32.max &- 1 && pages.type(target) == PageTypeCode.l1 &+ UInt8(truncatingIfNeeded: level &- 2)
    }

    /// Whether dropping `entry` leaves every table it references with a reference (so
    /// no table is torn down here), counting the reference `acquiring` takes first.
    func canRelease(_ entry: UInt64, level: UInt64, acquiring: UInt64) -> Bool {
        guard entry & CorePTE.present != 0 else { return true }
        let target = CorePTE.frame(entry)
        guard target < ramFrames else { return true }
        var count = pages.typeCount(target)
        if acquiring & CorePTE.present != 0 && CorePTE.frame(acquiring) == target
            && (level > 1 || acquiring & CorePTE.rw != 0) {
            count &+= 1
        }
        if level == 1 {
            guard entry & CorePTE.rw != 0 else { return true }
            // A writable mapping's reference; the last one going needs no devalidation,
            // but an underflow is the host's to report.
            return count > 0 && pages.type(target) == PageTypeCode.writable
        }
        return count > 1
    }

    /// Takes the references `entry` needs (`canAcquire` said it may).
    func acquire(_ entry: UInt64, level: UInt64) {
        guard entry & CorePTE.present != 0 else { return }
        let target = CorePTE.frame(entry)
        if level == 1 {
            if entry & CorePTE.rw != 0 {
                let count = pages.typeCount(target)
                if count == 0 { pages.setType(target, PageTypeCode.writable) }
                pages.setTypeCount(target, count &+ 1)
            }
            pages.setMappings(target, pages.mappings(target) &+ 1)
        } else {
            pages.setTypeCount(target, pages.typeCount(target) &+ 1)
        }
    }

    /// Drops the references `entry` held (`canRelease` said no table is torn down).
    func release(_ entry: UInt64, level: UInt64) {
        guard entry & CorePTE.present != 0 else { return }
        let target = CorePTE.frame(entry)
        guard target < ramFrames else { return }
        if level == 1 {
            let mappings = pages.mappings(target)
            if mappings > 0 { pages.setMappings(target, mappings &- 1) }
            // An underflow (bookkeeping gone wrong) is skipped, as the host skips it.
            let count = pages.typeCount(target)
            if entry & CorePTE.rw != 0 && count > 0 { pages.setTypeCount(target, count &- 1) }
        } else {
            pages.setTypeCount(target, pages.typeCount(target) &- 1)
        }
    }

    // MARK: Pins

    /// MMUEXT_PIN_L1_TABLE of `frame`. A frame already an L1 in use just gains the
    /// reference; one without a type reference becomes an L1 and each entry is
    /// validated and takes its references, as the host's `getPageType` with
    /// `validateTable` does. Returns false (nothing changed) when the host must do it;
    /// `flush` is set when the frame was writable before (a stale writable TLB entry
    /// must go). That flush is the host's when other vCPUs (`onlyVCPU` false) may hold
    /// such an entry: the core reaches only its own TLB. Called with the core lock held.
    func pinL1(_ frame: UInt64, onlyVCPU: Bool, flush: inout Bool) -> Bool {
        guard frame < ramFrames, !pages.pinned(frame) else { return false }
        let count = pages.typeCount(frame)
        if count > 0 {
            guard pages.type(frame) == PageTypeCode.l1, count < UInt32.max &- 1 else { return false }
            pages.setTypeCount(frame, count &+ 1)
            pages.setPinned(frame, true)
            return true
        }
        let base = frame << 12
        // Every entry must be one the core may install; none may map the table itself
        // writable (it is about to be an L1: the host's type conflict); and no count may
        // come near its limit however many entries share a target.
        var index: UInt64 = 0
        while index < 512 {
            let entry = ram.u64(base &+ index &* 8)
            guard canAcquire(entry, level: 1) else { return false }
            if entry & CorePTE.present != 0 {
                let target = CorePTE.frame(entry)
                if entry & CorePTE.rw != 0 && (target == frame || pages.typeCount(target) > UInt32.max &- 1024) { return false }
                if pages.mappings(target) > UInt32.max &- 1024 { return false }
            }
            index &+= 1
        }
        flush = pages.type(frame) == PageTypeCode.writable
        if flush && !onlyVCPU { return false }
        pages.setType(frame, PageTypeCode.l1)
        pages.setTypeCount(frame, 1)
        pages.setPinned(frame, true)
        index = 0
        while index < 512 {
            let address = base &+ index &* 8
            let entry = ram.u64(address)
            acquire(entry, level: 1)
            let adjusted = CorePTE.adjust(entry, level: 1)
            if adjusted != entry { ram.setU64(address, adjusted) }
            index &+= 1
        }
        return true
    }

    /// MMUEXT_UNPIN_TABLE of `frame`: a pinned table keeping another reference just
    /// loses the pin's; a pinned L1 losing its last reference also drops its entries'
    /// references (the host's `putPageType` with `devalidateTable`). Upper tables whose
    /// last reference goes are the host's. Returns false (nothing changed) when the
    /// host must do it. Called with the core lock held.
    func unpin(_ frame: UInt64) -> Bool {
        guard frame < ramFrames, pages.pinned(frame) else { return false }
        let count = pages.typeCount(frame)
        guard count > 0 else { return false }   // an underflow: the host reports it
        if count == 1 {
            guard pages.type(frame) == PageTypeCode.l1 else { return false }
            let base = frame << 12
            var index: UInt64 = 0
            while index < 512 {
                release(ram.u64(base &+ index &* 8), level: 1)
                index &+= 1
            }
        }
        pages.setPinned(frame, false)
        pages.setTypeCount(frame, count &- 1)
        return true
    }

    // MARK: Base pointers

    /// Whether a base pointer may move from `old` to `new` (frame numbers, `noFrame` for
    /// none) without the host: `new` is an L4 in use (no validation), and `old` keeps
    /// a reference afterwards. `deltas` holds the count changes of earlier switches in
    /// the same batch, not yet made.
    func canSwitchBase(from old: UInt64, to new: UInt64, deltas: FrameDeltas) -> Bool {
        if new != CoreLayout.noFrame {
            guard new < ramFrames, pages.type(new) == PageTypeCode.l4 else { return false }
            let count = Int64(pages.typeCount(new)) &+ deltas.delta(new)
            guard count > 0, count < Int64(UInt32.max) &- 1 else { return false }
        }
        if old != CoreLayout.noFrame {
            guard old < ramFrames else { return false }
            var count = Int64(pages.typeCount(old)) &+ deltas.delta(old)
            if old == new { count &+= 1 }
            guard count > 1 else { return false }
        }
        return true
    }

    func switchBase(from old: UInt64, to new: UInt64) {
        if new != CoreLayout.noFrame { pages.setTypeCount(new, pages.typeCount(new) &+ 1) }
        if old != CoreLayout.noFrame { pages.setTypeCount(old, pages.typeCount(old) &- 1) }
    }
}

/// Pending type-count changes of up to four frames (a batch of two base-pointer
/// switches), without allocating.
struct FrameDeltas {
    private var frames: (UInt64, UInt64, UInt64, UInt64) = (CoreLayout.noFrame, CoreLayout.noFrame, CoreLayout.noFrame, CoreLayout.noFrame)
    private var changes: (Int64, Int64, Int64, Int64) = (0, 0, 0, 0)

    func delta(_ frame: UInt64) -> Int64 {
        guard frame != CoreLayout.noFrame else { return 0 }
        if frames.0 == frame { return changes.0 }
        if frames.1 == frame { return changes.1 }
        if frames.2 == frame { return changes.2 }
        if frames.3 == frame { return changes.3 }
        return 0
    }

    /// Records a change; false when all four slots are taken by other frames.
    mutating func add(_ frame: UInt64, _ change: Int64) -> Bool {
        guard frame != CoreLayout.noFrame else { return true }
        if frames.0 == frame { changes.0 &+= change; return true }
        if frames.1 == frame { changes.1 &+= change; return true }
        if frames.2 == frame { changes.2 &+= change; return true }
        if frames.3 == frame { changes.3 &+= change; return true }
        if frames.0 == CoreLayout.noFrame { frames.0 = frame; changes.0 = change; return true }
        if frames.1 == CoreLayout.noFrame { frames.1 = frame; changes.1 = change; return true }
        if frames.2 == CoreLayout.noFrame { frames.2 = frame; changes.2 = change; return true }
        if frames.3 == CoreLayout.noFrame { frames.3 = frame; changes.3 = change; return true }
        return false
    }

    /// Makes the recorded changes.
    func apply(to pages: PageInfoTable) {
        Self.apply(frames.0, changes.0, pages)
        Self.apply(frames.1, changes.1, pages)
        Self.apply(frames.2, changes.2, pages)
        Self.apply(frames.3, changes.3, pages)
    }

    private static func apply(_ frame: UInt64, _ change: Int64, _ pages: PageInfoTable) {
        guard frame != CoreLayout.noFrame, change != 0 else { return }
        pages.setTypeCount(frame, UInt32(truncatingIfNeeded: Int64(pages.typeCount(frame)) &+ change))
    }
}
