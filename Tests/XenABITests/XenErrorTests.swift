// XenError (XenError.swift) against public/errno.h.

import Foundation
import Testing
import XenABI

@Suite("Xen errno values")
struct XenErrorTests {
    /// Values copied from xen/include/public/errno.h.
    @Test("Raw values are errno.h's", arguments: [
        (XenError.EPERM, Int32(1)), (.ENOENT, 2), (.ESRCH, 3), (.EINTR, 4), (.EIO, 5), (.ENXIO, 6), (.E2BIG, 7),
        (.ENOEXEC, 8), (.EBADF, 9), (.ECHILD, 10), (.EAGAIN, 11), (.ENOMEM, 12), (.EACCES, 13), (.EFAULT, 14),
        (.EBUSY, 16), (.EEXIST, 17), (.EXDEV, 18), (.ENODEV, 19), (.EINVAL, 22), (.ENFILE, 23), (.EMFILE, 24),
        (.ENOSPC, 28), (.EROFS, 30), (.EMLINK, 31), (.EDOM, 33), (.ERANGE, 34), (.EDEADLK, 35), (.ENAMETOOLONG, 36),
        (.ENOLCK, 37), (.ENOSYS, 38), (.ENOTEMPTY, 39), (.ENODATA, 61), (.ETIME, 62), (.EBADMSG, 74), (.EOVERFLOW, 75),
        (.EILSEQ, 84), (.ERESTART, 85), (.ENOTSOCK, 88), (.EMSGSIZE, 90), (.EOPNOTSUPP, 95), (.EADDRINUSE, 98),
        (.EADDRNOTAVAIL, 99), (.ENOBUFS, 105), (.EISCONN, 106), (.ENOTCONN, 107), (.ETIMEDOUT, 110), (.ECONNREFUSED, 111),
    ])
    func rawValues(error: XenError, value: Int32) {
        #expect(error.rawValue == value)
    }

    @Test("When the header is installed, every XEN_ERRNO(name, value) in it agrees with XenError")
    func againstInstalledHeader() throws {
        guard let text = try? String(contentsOfFile: "/usr/include/xen/errno.h", encoding: .utf8) else {
            withKnownIssue(headersMissing) { Issue.record("/usr/include/xen/errno.h is not readable") }
            return
        }
        var seen: Set<String> = []
        for line in text.split(separator: "\n") where line.hasPrefix("XEN_ERRNO(") {
            let inside = line.dropFirst("XEN_ERRNO(".count).prefix { $0 != ")" }
            let parts = inside.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            try #require(parts.count == 2, "\(line)")
            let value = try #require(Int32(parts[1]))
            seen.insert(parts[0])
            if let error = XenError.allCases.first(where: { $0.name == parts[0] }) {
                #expect(error.rawValue == value, "\(parts[0])")
            } else {
                // Only aliases may be missing from the enum.
                #expect(["EWOULDBLOCK", "EDEADLOCK"].contains(parts[0]), "\(parts[0]) is not in XenError")
            }
        }
        for error in XenError.allCases {
            #expect(seen.contains(error.name), "\(error.name) is not in errno.h")
        }
    }

    @Test("A hypercall returns -errno as a 64-bit word", arguments: XenError.allCases)
    func hypercallReturnValue(error: XenError) {
        #expect(Int64(bitPattern: error.hypercallReturnValue) == -Int64(error.rawValue))
    }

    @Test("Examples of -errno words")
    func examples() {
        #expect(XenError.ENOSYS.hypercallReturnValue == 0xffff_ffff_ffff_ffda)
        #expect(XenError.EFAULT.hypercallReturnValue == 0xffff_ffff_ffff_fff2)
        #expect(XenError.EPERM.hypercallReturnValue == UInt64.max)
        #expect(XenError.ENOSYS.description == "ENOSYS (-38)")
    }

    @Test("Names are the case names and unique")
    func names() {
        #expect(Set(XenError.allCases.map(\.name)).count == XenError.allCases.count)
        for error in XenError.allCases { #expect("\(error)".hasPrefix(error.name + " (-")) }
        #expect(Set(XenError.allCases.map(\.rawValue)).count == XenError.allCases.count)
    }
}
