import CGuestAtomics

/// A view of 8-byte-aligned words at a base pointer (the core's only way to memory).
///
/// In the VM the pointers are the hypervisor's supervisor-only mappings; in the host's
/// unit tests they point into fake guest memory. Offsets come from `CoreLayout` or are
/// checked against the domain's RAM size before use.
struct Words {
    let base: UnsafeMutableRawPointer

    @inline(__always) func u64(_ offset: UInt64) -> UInt64 {
        base.load(fromByteOffset: Int(truncatingIfNeeded: offset), as: UInt64.self)
    }
    @inline(__always) func setU64(_ offset: UInt64, _ value: UInt64) {
        base.storeBytes(of: value, toByteOffset: Int(truncatingIfNeeded: offset), as: UInt64.self)
    }
    @inline(__always) func u32(_ offset: UInt64) -> UInt32 {
        base.load(fromByteOffset: Int(truncatingIfNeeded: offset), as: UInt32.self)
    }
    @inline(__always) func setU32(_ offset: UInt64, _ value: UInt32) {
        base.storeBytes(of: value, toByteOffset: Int(truncatingIfNeeded: offset), as: UInt32.self)
    }
    @inline(__always) func u8(_ offset: UInt64) -> UInt8 {
        base.load(fromByteOffset: Int(truncatingIfNeeded: offset), as: UInt8.self)
    }
    @inline(__always) func setU8(_ offset: UInt64, _ value: UInt8) {
        base.storeBytes(of: value, toByteOffset: Int(truncatingIfNeeded: offset), as: UInt8.self)
    }
    @inline(__always) func pointer(_ offset: UInt64) -> UnsafeMutablePointer<UInt64> {
        (base + Int(truncatingIfNeeded: offset)).assumingMemoryBound(to: UInt64.self)
    }
    @inline(__always) func atomicLoad(_ offset: UInt64) -> UInt64 { cga_load64(pointer(offset)) }
    /// Exchanges a byte with a full barrier; returns the byte found.
    @inline(__always) func exchangeU8(_ offset: UInt64, _ value: UInt8) -> UInt8 {
        cga_exchange8((base + Int(truncatingIfNeeded: offset)).assumingMemoryBound(to: UInt8.self), value)
    }
    /// Compare-and-exchange; returns the value found.
    @inline(__always) func compareExchange(_ offset: UInt64, expected: UInt64, desired: UInt64) -> UInt64 {
        cga_compare_exchange64(pointer(offset), expected, desired)
    }
}

/// The page information table (`CoreLayout.pageInfo*`), indexed by frame number.
struct PageInfoTable {
    let words: Words
    let frames: UInt64

    @inline(__always) func typeCount(_ frame: UInt64) -> UInt32 {
        words.u32(frame &* UInt64(CoreLayout.pageInfoSize) &+ UInt64(CoreLayout.pageInfoTypeCount))
    }
    @inline(__always) func setTypeCount(_ frame: UInt64, _ value: UInt32) {
        words.setU32(frame &* UInt64(CoreLayout.pageInfoSize) &+ UInt64(CoreLayout.pageInfoTypeCount), value)
    }
    @inline(__always) func mappings(_ frame: UInt64) -> UInt32 {
        words.u32(frame &* UInt64(CoreLayout.pageInfoSize) &+ UInt64(CoreLayout.pageInfoMappings))
    }
    @inline(__always) func setMappings(_ frame: UInt64, _ value: UInt32) {
        words.setU32(frame &* UInt64(CoreLayout.pageInfoSize) &+ UInt64(CoreLayout.pageInfoMappings), value)
    }
    @inline(__always) func type(_ frame: UInt64) -> UInt8 {
        words.u8(frame &* UInt64(CoreLayout.pageInfoSize) &+ UInt64(CoreLayout.pageInfoType))
    }
    @inline(__always) func setType(_ frame: UInt64, _ value: UInt8) {
        words.setU8(frame &* UInt64(CoreLayout.pageInfoSize) &+ UInt64(CoreLayout.pageInfoType), value)
    }
    @inline(__always) func pinned(_ frame: UInt64) -> Bool {
        words.u8(frame &* UInt64(CoreLayout.pageInfoSize) &+ UInt64(CoreLayout.pageInfoPinned)) != 0
    }
    @inline(__always) func setPinned(_ frame: UInt64, _ value: Bool) {
        words.setU8(frame &* UInt64(CoreLayout.pageInfoSize) &+ UInt64(CoreLayout.pageInfoPinned), value ? 1 : 0)
    }
}

/// The spin lock in the domain header, shared with the host.
struct CoreLock {
    let header: Words

    /// Takes the lock, or gives up after a bounded wait (the caller then defers to the
    /// host, which waits properly).
    func acquire(tag: UInt64) -> Bool {
        var spins = 0
        while spins < 1_000_000 {
            if header.compareExchange(UInt64(CoreLayout.headerLock), expected: 0, desired: tag) == 0 { return true }
            cga_pause()
            spins &+= 1
        }
        return false
    }

    func release(tag: UInt64) {
        _ = header.compareExchange(UInt64(CoreLayout.headerLock), expected: tag, desired: 0)
    }
}

extension Words {
    /// Counts a hypercall (or a batch entry) the core completed or left to the host, by
    /// number, in a vCPU block.
    @inline(__always) func countCall(_ number: UInt64, handled: Bool) {
        guard number < UInt64(CoreLayout.counterSlots) else { return }
        let offset = UInt64(handled ? CoreLayout.vcpuHandledCounts : CoreLayout.vcpuDeferredCounts) &+ number &* 8
        setU64(offset, u64(offset) &+ 1)
    }

    // MARK: TLB requests, carried out by ring0/entry.S (several batch entries may ask)

    func requestFlush() {
        setU64(UInt64(CoreLayout.vcpuRequestFlush), 1)
    }

    /// Asks for `address` to be invalidated; a second, different address asks for a
    /// flush instead (there is one address slot).
    func requestInvalidate(_ address: UInt64) {
        if u64(UInt64(CoreLayout.vcpuRequestInvalidate)) != 0 && u64(UInt64(CoreLayout.vcpuInvalidateAddress)) != address {
            requestFlush()
            return
        }
        setU64(UInt64(CoreLayout.vcpuInvalidateAddress), address)
        setU64(UInt64(CoreLayout.vcpuRequestInvalidate), 1)
    }

    /// Counts one thing the core delivered without an exit (`CoreLayout.inVM*`), in a
    /// vCPU block.
    @inline(__always) func countInVM(_ slot: Int) {
        let offset = UInt64(CoreLayout.vcpuInVMCounts) &+ UInt64(slot) &* 8
        setU64(offset, u64(offset) &+ 1)
    }
}
