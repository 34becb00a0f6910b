/// `struct start_info` (public/xen.h): what the domain builder tells a PV guest at boot.
public struct StartInfo: Sendable, Equatable, WireLayout {
    public static let magicX86_64 = "xen-3.0-x86_64"
    public static let size = 0x490
    public static let maxCommandLine = 1024

    public var magic = StartInfo.magicX86_64
    public var nrPages: UInt64 = 0
    /// Machine address of the shared_info page.
    public var sharedInfo: UInt64 = 0
    public var flags: UInt32 = 0
    public var storeMFN: UInt64 = 0
    public var storeEvtchn: UInt32 = 0
    public var consoleMFN: UInt64 = 0
    public var consoleEvtchn: UInt32 = 0
    /// Virtual address of the initial page tables.
    public var ptBase: UInt64 = 0
    public var nrPTFrames: UInt64 = 0
    /// Virtual address of the p2m list.
    public var mfnList: UInt64 = 0
    public var modStart: UInt64 = 0
    public var modLen: UInt64 = 0
    public var commandLine = ""
    public var firstP2MPFN: UInt64 = 0
    public var nrP2MFrames: UInt64 = 0

    public init() {}

    public enum Offset {
        public static let magic = 0x00, nrPages = 0x20, sharedInfo = 0x28, flags = 0x30, storeMFN = 0x38,
                          storeEvtchn = 0x40, consoleMFN = 0x48, consoleEvtchn = 0x50, ptBase = 0x58,
                          nrPTFrames = 0x60, mfnList = 0x68, modStart = 0x70, modLen = 0x78, cmdLine = 0x80,
                          firstP2MPFN = 0x480, nrP2MFrames = 0x488
    }

    public static let layoutFacts: [(name: String, value: Int)] = [
        ("sizeof start_info", size), ("start_info.magic", Offset.magic), ("start_info.nr_pages", Offset.nrPages),
        ("start_info.shared_info", Offset.sharedInfo), ("start_info.flags", Offset.flags),
        ("start_info.store_mfn", Offset.storeMFN), ("start_info.store_evtchn", Offset.storeEvtchn),
        ("start_info.console.domU.mfn", Offset.consoleMFN), ("start_info.console.domU.evtchn", Offset.consoleEvtchn),
        ("start_info.pt_base", Offset.ptBase), ("start_info.nr_pt_frames", Offset.nrPTFrames),
        ("start_info.mfn_list", Offset.mfnList), ("start_info.mod_start", Offset.modStart),
        ("start_info.mod_len", Offset.modLen), ("start_info.cmd_line", Offset.cmdLine),
        ("start_info.first_p2m_pfn", Offset.firstP2MPFN), ("start_info.nr_p2m_frames", Offset.nrP2MFrames),
    ]

    /// The 0x490-byte image. The command line is cut to 1023 bytes plus NUL.
    public func encode() -> [UInt8] {
        var writer = ByteWriter(size: Self.size)
        writer.set(bytes: Array(magic.utf8), at: Offset.magic, limit: 31)
        writer.set(nrPages, at: Offset.nrPages)
        writer.set(sharedInfo, at: Offset.sharedInfo)
        writer.set(flags, at: Offset.flags)
        writer.set(storeMFN, at: Offset.storeMFN)
        writer.set(storeEvtchn, at: Offset.storeEvtchn)
        writer.set(consoleMFN, at: Offset.consoleMFN)
        writer.set(consoleEvtchn, at: Offset.consoleEvtchn)
        writer.set(ptBase, at: Offset.ptBase)
        writer.set(nrPTFrames, at: Offset.nrPTFrames)
        writer.set(mfnList, at: Offset.mfnList)
        writer.set(modStart, at: Offset.modStart)
        writer.set(modLen, at: Offset.modLen)
        writer.set(bytes: Array(commandLine.utf8), at: Offset.cmdLine, limit: Self.maxCommandLine - 1)
        writer.set(firstP2MPFN, at: Offset.firstP2MPFN)
        writer.set(nrP2MFrames, at: Offset.nrP2MFrames)
        return writer.bytes
    }

    public init(decoding bytes: [UInt8]) throws(ByteReader.OutOfBounds) {
        let reader = ByteReader(bytes)
        func string(_ offset: Int, _ limit: Int) -> String {
            let end = min(bytes.count, offset + limit)
            guard offset < end else { return "" }
            let slice = bytes[offset..<end]
            let terminated = slice.prefix { $0 != 0 }
            return String(decoding: terminated, as: UTF8.self)
        }
        magic = string(Offset.magic, 32)
        nrPages = try reader.u64(Offset.nrPages)
        sharedInfo = try reader.u64(Offset.sharedInfo)
        flags = try reader.u32(Offset.flags)
        storeMFN = try reader.u64(Offset.storeMFN)
        storeEvtchn = try reader.u32(Offset.storeEvtchn)
        consoleMFN = try reader.u64(Offset.consoleMFN)
        consoleEvtchn = try reader.u32(Offset.consoleEvtchn)
        ptBase = try reader.u64(Offset.ptBase)
        nrPTFrames = try reader.u64(Offset.nrPTFrames)
        mfnList = try reader.u64(Offset.mfnList)
        modStart = try reader.u64(Offset.modStart)
        modLen = try reader.u64(Offset.modLen)
        commandLine = string(Offset.cmdLine, Self.maxCommandLine)
        firstP2MPFN = try reader.u64(Offset.firstP2MPFN)
        nrP2MFrames = try reader.u64(Offset.nrP2MFrames)
    }
}
