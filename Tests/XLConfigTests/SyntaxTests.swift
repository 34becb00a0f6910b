import Testing

@testable import XLConfig

/// Parses `text` as `guest.cfg`, expecting success.
func parse(_ text: String) throws -> XLConfigFile {
    try XLConfigFile(parsing: text, sourceName: "guest.cfg")
}

/// The error parsing `text` as `guest.cfg` throws, or `nil`.
func syntaxError(_ text: String) -> XLConfigError? {
    do {
        _ = try XLConfigFile(parsing: text, sourceName: "guest.cfg")
        return nil
    } catch {
        return error
    }
}

@Suite struct SyntaxTests {
    @Test func numbersKeepTheirSpelling() throws {
        let file = try parse("a = 512\nb = 0x200\nc = 01000\nd = 0\n")
        #expect(file["a"]?.value == .number("512"))
        #expect(file["b"]?.value == .number("0x200"))
        #expect(file["c"]?.value == .number("01000"))
        #expect(file["d"]?.value == .number("0"))
    }

    @Test func integerLiteralsReadLikeStrtol() {
        #expect(parseIntegerLiteral("512") == 512)
        #expect(parseIntegerLiteral("0x1F") == 31)
        #expect(parseIntegerLiteral("0X1f") == 31)
        #expect(parseIntegerLiteral("010") == 8)
        #expect(parseIntegerLiteral("0") == 0)
        #expect(parseIntegerLiteral("-12") == -12)
        #expect(parseIntegerLiteral("+12") == 12)
        #expect(parseIntegerLiteral("09") == nil)
        #expect(parseIntegerLiteral("0x") == nil)
        #expect(parseIntegerLiteral("12abc") == nil)
        #expect(parseIntegerLiteral("--1") == nil)
        #expect(parseIntegerLiteral("") == nil)
        #expect(parseIntegerLiteral("99999999999999999999") == nil)
    }

    @Test func stringsInEitherQuote() throws {
        let file = try parse(#"a = "double"; b = 'single'; c = "it's"; d = 'say "hi"'"#)
        #expect(file["a"]?.value == .string("double"))
        #expect(file["b"]?.value == .string("single"))
        #expect(file["c"]?.value == .string("it's"))
        #expect(file["d"]?.value == .string(#"say "hi""#))
    }

    @Test func stringEscapes() throws {
        let file = try parse(#"a = "q\"s\'b\\ \a\b\f\n\r\t\v" ; b = "\x41\102\7x""#)
        #expect(file["a"]?.value == .string("q\"s'b\\ \u{07}\u{08}\u{0C}\n\r\t\u{0B}"))
        #expect(file["b"]?.value == .string("AB\u{07}x"))
    }

    @Test func utf8Strings() throws {
        let file = try parse("extra = \"café ☕\"")
        #expect(file["extra"]?.value == .string("café ☕"))
    }

    @Test func listsAcrossLinesWithCommentsAndTrailingComma() throws {
        let file = try parse(
            """
            disk = [
                # the root disk
                'phy:/dev/vg/root,xvda,w',   # comment after a value
                'phy:/dev/vg/swap,xvdb,w'
                ,
                "file:/srv/data.img,xvdc,r",
            ]
            empty = [ ]
            nested = [ 1, [ "a", [ ] ], 'x' ]
            """)
        #expect(
            file["disk"]?.value
                == .list([
                    .string("phy:/dev/vg/root,xvda,w"), .string("phy:/dev/vg/swap,xvdb,w"),
                    .string("file:/srv/data.img,xvdc,r"),
                ]))
        #expect(file["empty"]?.value == .list([]))
        #expect(file["nested"]?.value == .list([.number("1"), .list([.string("a"), .list([])]), .string("x")]))
    }

    @Test func commentsSemicolonsAndBlankLines() throws {
        let file = try parse("# header\n\n  name = \"a\" ; memory = 256;;\n\t# indented comment\nvcpus=2 # trailing")
        #expect(file.keys == ["name", "memory", "vcpus"])
        #expect(file["vcpus"]?.value == .number("2"))
    }

    @Test func commentAtEndOfFileWithoutNewline() throws {
        let file = try parse("name = \"a\"\n# no newline after me")
        #expect(file.keys == ["name"])
    }

    @Test func crlfLineEndings() throws {
        let file = try parse("name = \"a\"\r\nmemory = 64\r\n")
        #expect(file["memory"]?.value == .number("64"))
    }

    @Test func emptyFile() throws {
        #expect(try parse("").settings.isEmpty)
        #expect(try parse("\n\n# only comments\n").settings.isEmpty)
    }

    @Test func keysMayHoldDotsDigitsAndUnderscores() throws {
        let file = try parse("on_poweroff = 'destroy'\nx.y_2 = 1\n_Upper = 2")
        #expect(file.keys == ["on_poweroff", "x.y_2", "_Upper"])
    }

    @Test func locationsOfKeysAndValues() throws {
        let file = try parse("\n  memory =  512\n")
        let setting = try #require(file["memory"])
        #expect(setting.location == SourceLocation(source: "guest.cfg", line: 2, column: 3))
        #expect(setting.valueLocation == SourceLocation(source: "guest.cfg", line: 2, column: 13))
    }

    @Test func columnsCountCharactersNotBytes() throws {
        let error = syntaxError("extra = \"é\" x")
        #expect(error == .syntax(SourceLocation(source: "guest.cfg", line: 1, column: 13), "expected a newline or `;` after the value of `extra`, found `x`"))
    }

    @Test func laterSettingsOverrideEarlierOnes() throws {
        let file = try parse("memory = 256\nmemory = 512\n")
        #expect(file["memory"]?.effectiveValue == .number("512"))
        #expect(file["memory"]?.location.line == 2)
        #expect(file.settings.count == 2)
        #expect(file.keys == ["memory"])
    }

    @Test func appendConcatenatesStringsAndLists() throws {
        let file = try parse(
            """
            extra = "console=hvc0"
            extra += " quiet"
            disk = [ 'a' ]
            disk += [ 'b', 'c' ]
            fresh += "x"
            """)
        #expect(file["extra"]?.effectiveValue == .string("console=hvc0 quiet"))
        #expect(file["extra"]?.value == .string(" quiet"))
        #expect(file["extra"]?.operation == .append)
        #expect(file["disk"]?.effectiveValue == .list([.string("a"), .string("b"), .string("c")]))
        #expect(file["fresh"]?.effectiveValue == .string("x"))
    }

    @Test func assignmentAfterAppendStartsAfresh() throws {
        let file = try parse("extra = 'a'\nextra += 'b'\nextra = 'c'\nextra += 'd'")
        #expect(file["extra"]?.effectiveValue == .string("cd"))
    }

    @Test func appendingAListToAStringIsAnError() {
        #expect(
            syntaxError("extra = 'a'\nextra += [ 'b' ]")
                == .syntax(
                    SourceLocation(source: "guest.cfg", line: 2, column: 10),
                    "`extra +=` cannot add a list to a string; both sides of += must be strings or both lists"))
    }

    @Test func errorsNameLineColumnAndWhatWasExpected() {
        let cases: [(String, Int, Int, String)] = [
            ("memory 512", 1, 8, "expected `=` or `+=` after `memory`, found the number 512"),
            ("memory =\n", 1, 9, "expected a value for `memory` (a number, a \"string\" or a [list]), found end of line"),
            ("memory =", 1, 9, "expected a value for `memory` (a number, a \"string\" or a [list]), found end of file"),
            ("name = foo", 1, 8, "expected a value for `name`, found the bare word `foo`; strings must be quoted, as in name = \"foo\""),
            ("a = 1 b = 2", 1, 7, "expected a newline or `;` after the value of `a`, found `b`"),
            ("= 5", 1, 1, "expected a setting such as `memory = 512`, found `=`"),
            ("\n\n  vcpus = 1.5", 3, 11, "invalid number `1.5`: numbers are whole integers, in decimal, 0x hexadecimal or 0-prefixed octal; quote anything else as a string"),
            ("x = 12abc", 1, 5, "invalid number `12abc`: numbers are whole integers, in decimal, 0x hexadecimal or 0-prefixed octal; quote anything else as a string"),
            ("x = 09", 1, 5, "invalid number `09`: numbers are whole integers, in decimal, 0x hexadecimal or 0-prefixed octal; quote anything else as a string"),
            ("x = -1", 1, 5, "unexpected `-`: negative numbers must be quoted, as in \"-1\""),
            ("x = 'abc", 1, 5, "unterminated string: expected a closing ' before the end of the line"),
            ("x = \"abc\ndef\"", 1, 5, "unterminated string: expected a closing \" before the end of the line"),
            ("x = \"a\\qb\"", 1, 7, "invalid escape `\\q` in string; use \\\\ for a backslash"),
            ("x = \"\\xZ1\"", 1, 6, "invalid escape: `\\x` must be followed by two hex digits"),
            ("x = \"\\400\"", 1, 6, "invalid escape: octal escape is larger than \\377"),
            ("x = \"a\\0b\"", 1, 5, "strings cannot contain a NUL character"),
            ("x = [ 1 2 ]", 1, 9, "expected `,` or `]` in the list for `x` opened at line 1 column 5, found the number 2"),
            ("x = [ 1,\n 2,\n", 3, 1, "expected a value for `x` (a number, a \"string\" or a [list]), found end of file"),
            ("x = [ 1,\n 2\n", 3, 1, "expected `,` or `]` in the list for `x` opened at line 1 column 5, found end of file"),
            ("x = [ , ]", 1, 7, "expected a value for `x` (a number, a \"string\" or a [list]), found `,`"),
            ("x = ]", 1, 5, "expected a value for `x` (a number, a \"string\" or a [list]), found `]`"),
            ("x = { }", 1, 5, "unexpected `{`: expected a key, a value, `=`, `+=`, `,`, `;`, `[` or `]`"),
            ("x = 1 @", 1, 7, "unexpected `@`: expected a key, a value, `=`, `+=`, `,`, `;`, `[` or `]`"),
        ]
        for (text, line, column, message) in cases {
            let error = syntaxError(text)
            #expect(error == .syntax(SourceLocation(source: "guest.cfg", line: line, column: column), message), "\(text)")
        }
    }

    @Test func pythonLooksLikePython() throws {
        let error = try #require(syntaxError("disk = ['a'] + ['b']"))
        #expect(error.description.hasPrefix("guest.cfg:1:14: unexpected `+`: xl config files are not Python"))
        let call = try #require(syntaxError("import os\nmemory = os.getenv('M')"))
        #expect(call.description.hasPrefix("guest.cfg:1:8: expected `=` or `+=` after `import`, found `os`"))
    }

    @Test func errorDescriptionIsFileLineColumnMessage() {
        let error = syntaxError("name = \"a\"\nmemory = ")
        #expect(error?.description == "guest.cfg:2:10: expected a value for `memory` (a number, a \"string\" or a [list]), found end of file")
    }

    @Test func invalidUTF8InAStringIsRefused() {
        let bytes = Array("extra = \"".utf8) + [0xFF] + Array("\"".utf8)
        #expect(throws: XLConfigError.syntax(SourceLocation(source: "g", line: 1, column: 9), "string is not valid UTF-8")) {
            try XLConfigFile(parsing: bytes, sourceName: "g")
        }
    }

    @Test func deeplyNestedListsAreRefusedNotCrashing() {
        let text = "x = " + String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        let error = syntaxError(text)
        #expect(error == .syntax(SourceLocation(source: "guest.cfg", line: 1, column: 37), "lists nest more than 32 deep"))
    }

    @Test func arbitraryBytesNeverCrash() {
        // Every prefix of a tricky file, and some junk, either parses or throws.
        let text = "a = [ 'x\\'', \"y\\x41\", 0x1f, [ 010 ], ]; b += 'c' # \u{7f}\n\0\u{1}"
        let bytes = Array(text.utf8) + [0xC3, 0x28, 0xFF]
        for length in 0...bytes.count {
            _ = try? XLConfigFile(parsing: Array(bytes.prefix(length)), sourceName: "fuzz")
        }
    }
}

@Suite struct OverrideTests {
    @Test func overridesApplyAfterTheFile() throws {
        var file = try parse("name = 'a'\nmemory = 256\nextra = 'console=hvc0'\ndisk = [ 'x' ]")
        try file.applyOverrides(["memory=1024", "name=\"b\"; vcpus=2", "extra+=' single'", "disk+=['y']"])
        #expect(file["memory"]?.effectiveValue == .number("1024"))
        #expect(file["name"]?.effectiveValue == .string("b"))
        #expect(file["vcpus"]?.effectiveValue == .number("2"))
        #expect(file["extra"]?.effectiveValue == .string("console=hvc0 single"))
        #expect(file["disk"]?.effectiveValue == .list([.string("x"), .string("y")]))
        #expect(file["vcpus"]?.location == SourceLocation(source: "command line argument 2", line: 1, column: 11))
    }

    @Test func badOverrideNamesTheArgument() throws {
        var file = try parse("name = 'a'")
        #expect(
            throws: XLConfigError.syntax(
                SourceLocation(source: "command line argument 2", line: 1, column: 6),
                "expected a value for `name`, found the bare word `b`; strings must be quoted, as in name = \"b\"")
        ) {
            try file.applyOverrides(["memory=1", "name=b"])
        }
    }

    @Test func domainConfigurationTakesOverrides() throws {
        let config = try DomainConfiguration(
            parsing: "name = 'a'\nkernel = '/k'\nmemory = 256", sourceName: "guest.cfg",
            overrides: ["memory=512", "extra=\"quiet\""])
        #expect(config.memoryMiB == 512)
        #expect(config.cmdline == "quiet")
    }
}
