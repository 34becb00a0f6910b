// Path rules: canonicalize() of tools/xenstored/core.c.

import Testing
@testable import XenStore

@Suite struct PathTests {
    func canonical(_ text: String, home: XenStore.DomainID = 5, special: Bool = false, limit: Int? = nil) -> String? {
        try? XenStorePath.canonicalize(Array(text.utf8)[...], home: home, allowSpecial: special, relativeLimit: limit)
            .path
    }

    @Test func absoluteAndRelative() {
        #expect(canonical("/a/b") == "/a/b")
        #expect(canonical("/") == "/")
        #expect(canonical("device/vif") == "/local/domain/5/device/vif")
        #expect(canonical("x", home: 0) == "/local/domain/0/x")
    }

    @Test func rejectsBadSyntax() {
        for bad in ["", "/a/", "/a//b", "//", "/a b", "/a.b", "/ä", "name/", "/a\u{0}b"] {
            #expect(canonical(bad) == nil, "\(bad)")
        }
    }

    @Test func specialPathsOnlyWhereAllowed() {
        #expect(canonical("@releaseDomain") == nil)
        #expect(canonical("@releaseDomain", special: true) == "@releaseDomain")
        #expect(canonical("@releaseDomain/5", special: true) == "@releaseDomain/5")
        #expect(canonical("/a@b") == "/a@b")
    }

    @Test func lengthLimits() {
        let long = String(repeating: "a", count: 2048)
        #expect(canonical("/" + long, limit: 2048) == nil)
        #expect(canonical("/" + String(long.dropFirst()), limit: 2048) != nil)
        // The /local/domain/<domid>/ prefix is not counted.
        #expect(canonical(long, limit: 2048) == "/local/domain/5/" + long)
        #expect(canonical("/" + String(repeating: "a", count: 3071)) != nil)
        #expect(canonical("/" + String(repeating: "a", count: 3072)) == nil)
    }

    @Test func navigation() {
        #expect(XenStorePath.parent(of: "/a/b") == "/a")
        #expect(XenStorePath.parent(of: "/a") == "/")
        #expect(XenStorePath.parent(of: "@releaseDomain") == "/")
        #expect(XenStorePath.baseName(of: "/a/b") == "b")
        #expect(XenStorePath.child("x", of: "/") == "/x")
        #expect(XenStorePath.watchCandidates(for: "/a/b") == ["/a/b", "/a", "/"])
        #expect(XenStorePath.watchCandidates(for: "@releaseDomain/3") == ["@releaseDomain/3", "@releaseDomain"])
    }
}
