// Path syntax of docs/misc/xenstore.txt and canonicalize() in tools/xenstored/core.c.

/// Path rules: validation, relative-path expansion and tree navigation.
///
/// A canonical path is either absolute (`/local/domain/5/name`) or special
/// (`@introduceDomain`, `@releaseDomain`, or any `@...` watch path). Only the
/// ASCII set `[A-Za-z0-9-/_@]` is allowed, doubled and trailing slashes are not,
/// and the empty path is not (`docs/misc/xenstore.txt`).
enum XenStorePath {
    /// `XENSTORE_ABS_PATH_MAX`: the longest canonical path anyone may use.
    static let absoluteMax = 3072
    /// `XENSTORE_REL_PATH_MAX`: the default length limit for an unprivileged
    /// domain, counted after any `/local/domain/<domid>/` prefix.
    static let relativeMax = 2048

    /// The watch path fired when a domain is introduced.
    static let introduceDomain = "@introduceDomain"
    /// The watch path fired when a domain is released or shuts down.
    static let releaseDomain = "@releaseDomain"

    /// `/local/domain/<domid>`, the home of a domain and the base of its relative paths.
    static func domainPath(_ domain: XenStore.DomainID) -> String {
        "/local/domain/\(domain.rawValue)"
    }

    /// Validates `bytes` (one payload string, without its NUL) and makes it
    /// absolute, as xenstored's `canonicalize` does.
    ///
    /// - Parameters:
    ///   - allowSpecial: whether `@...` paths are accepted (watches and permissions only).
    ///   - relativeLimit: for unprivileged callers, the maximum length after a
    ///     `/local/domain/<domid>/` prefix (the `path-max` quota); nil for privileged ones.
    /// - Returns: the canonical path and whether the input was relative.
    /// - Throws: `EINVAL` for any violation.
    static func canonicalize(
        _ bytes: ArraySlice<UInt8>, home: XenStore.DomainID, allowSpecial: Bool, relativeLimit: Int?
    ) throws(XenStoreError) -> (path: String, relative: Bool) {
        guard let first = bytes.first, bytes.count <= absoluteMax, bytes.allSatisfy(isValidCharacter) else {
            throw .EINVAL
        }
        if first == UInt8(ascii: "@") && !allowSpecial { throw .EINVAL }
        let relative = first != UInt8(ascii: "/") && first != UInt8(ascii: "@")
        let text = String(decoding: bytes, as: UTF8.self)
        let path = relative ? domainPath(home) + "/" + text : text
        let utf8 = path.utf8
        guard path == "/" || utf8.last != UInt8(ascii: "/") else { throw .EINVAL }
        guard !containsDoubleSlash(utf8), utf8.count <= absoluteMax else { throw .EINVAL }
        if let relativeLimit, relativeLimit > 0, utf8.count - localDomainPrefixLength(utf8) > relativeLimit {
            throw .EINVAL
        }
        return (path, relative)
    }

    /// Whether the byte is one of `[A-Za-z0-9-/_@]` (`valid_chars` in core.c).
    static func isValidCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        case UInt8(ascii: "-"), UInt8(ascii: "/"), UInt8(ascii: "_"), UInt8(ascii: "@"):
            true
        default:
            false
        }
    }

    /// The parent of a canonical path: `/a/b` → `/a`, `/a` → `/`, and a special
    /// path without a slash → `/`, like `get_parent` in core.c.
    static func parent(of path: String) -> String {
        let utf8 = path.utf8
        guard let slash = utf8.dropFirst().lastIndex(of: UInt8(ascii: "/")) else { return "/" }
        return String(path[..<slash])
    }

    /// The last component of a canonical path other than `/`.
    static func baseName(of path: String) -> String {
        guard let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")) else { return path }
        return String(path[path.utf8.index(after: slash)...])
    }

    /// The path of child `name` under `parent`.
    static func child(_ name: String, of parent: String) -> String {
        parent == "/" ? "/" + name : parent + "/" + name
    }

    /// `path` and every ancestor whose watches see a change of `path` (`is_child` in
    /// `tools/xenstored/watch.c`): up to `/` for absolute paths; special paths only
    /// match watches on themselves or on their `@...` prefixes.
    static func watchCandidates(for path: String) -> [String] {
        var candidates = [path]
        var current = path
        if path.hasPrefix("/") {
            while current != "/" {
                current = parent(of: current)
                candidates.append(current)
            }
        } else {
            while let slash = current.utf8.lastIndex(of: UInt8(ascii: "/")) {
                current = String(current[..<slash])
                candidates.append(current)
            }
        }
        return candidates
    }

    /// Length of a leading `/local/domain/<1-5 digits>/`, or 0; xenstored exempts it
    /// from the `path-max` quota (`sscanf(name, "/local/domain/%5u/%n", ...)`).
    static func localDomainPrefixLength(_ utf8: String.UTF8View) -> Int {
        let prefix = "/local/domain/".utf8
        guard utf8.starts(with: prefix) else { return 0 }
        var digits = 0
        for byte in utf8.dropFirst(prefix.count) {
            if byte == UInt8(ascii: "/") {
                return digits > 0 ? prefix.count + digits + 1 : 0
            }
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") && digits < 5 else { return 0 }
            digits += 1
        }
        return 0
    }

    private static func containsDoubleSlash(_ utf8: String.UTF8View) -> Bool {
        var previousWasSlash = false
        for byte in utf8 {
            let isSlash = byte == UInt8(ascii: "/")
            if isSlash && previousWasSlash { return true }
            previousWasSlash = isSlash
        }
        return false
    }
}
