// Lexer and parser for xl's config syntax.
//
// Follows the grammar of tools/libs/util/libxlu_cfg_y.y and the tokens of libxlu_cfg_l.l
// (written afresh, not translated):
//
//     file       := (statement? (NEWLINE | ';'))* statement?
//     statement  := KEY ('=' | '+=') value
//     value      := NUMBER | STRING | '[' NEWLINE* (value NEWLINE* (',' NEWLINE* value NEWLINE*)* (',' NEWLINE*)?)? ']'
//
// Where this deliberately differs from libxlu:
// - Keys may also start with an upper-case letter or `_` (`[A-Za-z_][A-Za-z0-9_.]*`);
//   libxlu only takes `[a-z][._0-9a-z]*`. Such keys are unknown to xl, so they only warn.
// - A number must be a whole valid integer (`12abc` is refused where it is read, not later).
// - `\xHH` and `\OOO` escapes work; libxlu's are broken and always fail, so no working xl
//   file uses them.
// - A comment may end the file without a final newline, and `\r` counts as a blank.
// - The first error stops parsing; libxlu reports more but still fails.

/// A lexical token and where it starts.
struct Token {
    enum Kind: Equatable {
        case key(String)
        case number(String)
        case string(String)
        case assign
        case append
        case semicolon
        case comma
        case openBracket
        case closeBracket
        case newline
        case end
    }

    let kind: Kind
    let line: Int
    let column: Int

    /// How messages name this token: "end of line", "`]`", "the key `vcpus`".
    var name: String {
        switch kind {
        case .key(let key): "`\(key)`"
        case .number(let text): "the number \(text)"
        case .string(let text): "the string \(quoted(text))"
        case .assign: "`=`"
        case .append: "`+=`"
        case .semicolon: "`;`"
        case .comma: "`,`"
        case .openBracket: "`[`"
        case .closeBracket: "`]`"
        case .newline: "end of line"
        case .end: "end of file"
        }
    }
}

/// Splits config bytes into tokens, tracking line and column.
struct XLConfigLexer {
    private let bytes: [UInt8]
    private let sourceName: String
    private var offset = 0
    private var line = 1
    private var column = 1

    init(bytes: [UInt8], sourceName: String) {
        self.bytes = bytes
        self.sourceName = sourceName
    }

    private var current: UInt8? { offset < bytes.count ? bytes[offset] : nil }

    private func peek(_ distance: Int) -> UInt8? {
        offset + distance < bytes.count ? bytes[offset + distance] : nil
    }

    /// Moves past one byte. Columns count characters: UTF-8 continuation bytes add none.
    private mutating func advance() {
        guard let byte = current else { return }
        offset += 1
        if byte == UInt8(ascii: "\n") {
            line += 1
            column = 1
        } else if byte & 0xC0 != 0x80 {
            column += 1
        }
    }

    private func location(_ line: Int, _ column: Int) -> SourceLocation {
        SourceLocation(source: sourceName, line: line, column: column)
    }

    mutating func next() throws(XLConfigError) -> Token {
        // Blanks and comments. A comment runs to the end of the line; the newline is a token.
        while let byte = current {
            if byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r") {
                advance()
            } else if byte == UInt8(ascii: "#") {
                while let inComment = current, inComment != UInt8(ascii: "\n") { advance() }
            } else {
                break
            }
        }
        let startLine = line
        let startColumn = column
        func token(_ kind: Token.Kind) -> Token { Token(kind: kind, line: startLine, column: startColumn) }

        guard let byte = current else { return token(.end) }
        switch byte {
        case UInt8(ascii: "\n"):
            advance()
            return token(.newline)
        case UInt8(ascii: "="):
            advance()
            return token(.assign)
        case UInt8(ascii: "+") where peek(1) == UInt8(ascii: "="):
            advance()
            advance()
            return token(.append)
        case UInt8(ascii: ";"):
            advance()
            return token(.semicolon)
        case UInt8(ascii: ","):
            advance()
            return token(.comma)
        case UInt8(ascii: "["):
            advance()
            return token(.openBracket)
        case UInt8(ascii: "]"):
            advance()
            return token(.closeBracket)
        case UInt8(ascii: "\""), UInt8(ascii: "'"):
            return token(.string(try lexString()))
        case _ where isKeyStart(byte):
            var text = ""
            while let next = current, isKeyStart(next) || isDigit(next) || next == UInt8(ascii: ".") {
                text.unicodeScalars.append(Unicode.Scalar(next))
                advance()
            }
            return token(.key(text))
        case _ where isDigit(byte):
            var text = ""
            while let next = current, isKeyStart(next) || isDigit(next) || next == UInt8(ascii: ".") {
                text.unicodeScalars.append(Unicode.Scalar(next))
                advance()
            }
            guard parseIntegerLiteral(text) != nil else {
                throw .syntax(
                    location(startLine, startColumn),
                    "invalid number `\(text)`: numbers are whole integers, in decimal, "
                        + "0x hexadecimal or 0-prefixed octal; quote anything else as a string")
            }
            return token(.number(text))
        default:
            throw .syntax(location(startLine, startColumn), unexpectedCharacterMessage())
        }
    }

    /// Explains a character that starts no token, with xl's hint for Python-era files.
    private func unexpectedCharacterMessage() -> String {
        guard let byte = current else { return "unexpected end of file" }
        if byte == UInt8(ascii: "-") && peek(1).map(isDigit) == true {
            return "unexpected `-`: negative numbers must be quoted, as in \"-1\""
        }
        let shown: String
        if byte >= 0x20 && byte < 0x7F {
            shown = "`" + String(Unicode.Scalar(byte)) + "`"
        } else if byte >= 0x80 {
            shown = "non-ASCII text"
        } else {
            shown = "control character 0x" + String(byte, radix: 16)
        }
        // libxlu flags these as likely Python (libxlu_cfg_l.l, `likely_python`).
        if Array("+-.():".utf8).contains(byte) {
            return "unexpected \(shown): xl config files are not Python; values are "
                + "numbers, \"strings\" or [lists] (see https://wiki.xen.org/wiki/PythonInXlConfig)"
        }
        return "unexpected \(shown): expected a key, a value, `=`, `+=`, `,`, `;`, `[` or `]`"
    }

    /// Reads a single- or double-quoted string with libxlu's escapes (`\"`, `\'`, `\\`,
    /// `\a \b \f \n \r \t \v`, plus `\xHH` and 1–3 digit octal `\OOO`). Strings end on the
    /// line they start on.
    private mutating func lexString() throws(XLConfigError) -> String {
        let startLine = line
        let startColumn = column
        guard let quote = current else { return "" }
        advance()
        var contents: [UInt8] = []
        while true {
            guard let byte = current, byte != UInt8(ascii: "\n") else {
                throw .syntax(
                    location(startLine, startColumn),
                    "unterminated string: expected a closing \(quote == UInt8(ascii: "'") ? "'" : "\"") "
                        + "before the end of the line")
            }
            if byte == quote {
                advance()
                break
            }
            if byte != UInt8(ascii: "\\") {
                contents.append(byte)
                advance()
                continue
            }
            let escapeLine = line
            let escapeColumn = column
            advance()
            guard let escaped = current, escaped != UInt8(ascii: "\n") else {
                throw .syntax(location(escapeLine, escapeColumn), "unterminated string: `\\` at the end of the line")
            }
            advance()
            switch escaped {
            case UInt8(ascii: "\""), UInt8(ascii: "'"), UInt8(ascii: "\\"): contents.append(escaped)
            case UInt8(ascii: "a"): contents.append(0x07)
            case UInt8(ascii: "b"): contents.append(0x08)
            case UInt8(ascii: "f"): contents.append(0x0C)
            case UInt8(ascii: "n"): contents.append(0x0A)
            case UInt8(ascii: "r"): contents.append(0x0D)
            case UInt8(ascii: "t"): contents.append(0x09)
            case UInt8(ascii: "v"): contents.append(0x0B)
            case UInt8(ascii: "x"):
                guard let high = current.flatMap(hexDigitValue), let low = peek(1).flatMap(hexDigitValue) else {
                    throw .syntax(
                        location(escapeLine, escapeColumn), "invalid escape: `\\x` must be followed by two hex digits")
                }
                advance()
                advance()
                contents.append(high << 4 | low)
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                var value = Int(escaped - UInt8(ascii: "0"))
                var digits = 1
                while digits < 3, let next = current, next >= UInt8(ascii: "0"), next <= UInt8(ascii: "7") {
                    value = value * 8 + Int(next - UInt8(ascii: "0"))
                    digits += 1
                    advance()
                }
                guard value <= 0xFF else {
                    throw .syntax(location(escapeLine, escapeColumn), "invalid escape: octal escape is larger than \\377")
                }
                contents.append(UInt8(value))
            default:
                let shown = escaped >= 0x20 && escaped < 0x7F ? String(Unicode.Scalar(escaped)) : "?"
                throw .syntax(
                    location(escapeLine, escapeColumn),
                    "invalid escape `\\\(shown)` in string; use \\\\ for a backslash")
            }
        }
        if contents.contains(0) {
            throw .syntax(location(startLine, startColumn), "strings cannot contain a NUL character")
        }
        guard let text = String(validating: contents, as: UTF8.self) else {
            throw .syntax(location(startLine, startColumn), "string is not valid UTF-8")
        }
        return text
    }
}

private func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

private func isKeyStart(_ byte: UInt8) -> Bool {
    (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
        || byte == UInt8(ascii: "_")
}

private func hexDigitValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
    default: nil
    }
}

/// Reads an integer the way C's `strtol(text, &end, 0)` does when it consumes the whole
/// text, as libxlu's `xlu_cfg_get_long` requires: an optional sign, then `0x`/`0X` hex,
/// `0`-prefixed octal, or decimal. `nil` if malformed or beyond 64 bits.
func parseIntegerLiteral(_ text: String) -> Int? {
    var digits = Substring(text)
    var negative = false
    if let sign = digits.first, sign == "-" || sign == "+" {
        negative = sign == "-"
        digits = digits.dropFirst()
    }
    var radix = 10
    if digits.hasPrefix("0x") || digits.hasPrefix("0X") {
        radix = 16
        digits = digits.dropFirst(2)
    } else if digits.count > 1 && digits.hasPrefix("0") {
        radix = 8
        digits = digits.dropFirst()
    }
    // Int(_:radix:) would accept a second sign; only digits may follow here.
    guard !digits.isEmpty, digits.allSatisfy({ $0.isHexDigit }) else { return nil }
    return Int(negative ? "-" + digits : String(digits), radix: radix)
}

/// True for numbers C would read as octal: a leading 0 followed by more digits.
func isOctalLiteral(_ text: String) -> Bool {
    var digits = Substring(text)
    if let sign = digits.first, sign == "-" || sign == "+" { digits = digits.dropFirst() }
    return digits.count > 1 && digits.hasPrefix("0") && !digits.hasPrefix("0x") && !digits.hasPrefix("0X")
}

/// Recursive-descent parser over `XLConfigLexer`, recording settings into an
/// `XLConfigFile`.
struct XLConfigParser {
    /// Lists nest at most this deep, so hostile input cannot exhaust the stack.
    static let maximumListDepth = 32

    private var lexer: XLConfigLexer
    private let sourceName: String
    private var token = Token(kind: .end, line: 1, column: 1)

    init(bytes: [UInt8], sourceName: String) {
        lexer = XLConfigLexer(bytes: bytes, sourceName: sourceName)
        self.sourceName = sourceName
    }

    private func location(of token: Token) -> SourceLocation {
        SourceLocation(source: sourceName, line: token.line, column: token.column)
    }

    private mutating func advance() throws(XLConfigError) {
        token = try lexer.next()
    }

    private mutating func skipNewlines() throws(XLConfigError) {
        while token.kind == .newline { try advance() }
    }

    mutating func parse(into file: inout XLConfigFile) throws(XLConfigError) {
        try advance()
        while true {
            switch token.kind {
            case .end:
                return
            case .newline, .semicolon:
                try advance()
            case .key(let key):
                let keyLocation = location(of: token)
                try advance()
                let operation: XLConfigSetting.Operation
                switch token.kind {
                case .assign: operation = .assign
                case .append: operation = .append
                default:
                    throw .syntax(location(of: token), "expected `=` or `+=` after `\(key)`, found \(token.name)")
                }
                try advance()
                let valueLocation = location(of: token)
                let value = try parseValue(key: key, depth: 0)
                switch token.kind {
                case .newline, .semicolon, .end:
                    break
                default:
                    throw .syntax(
                        location(of: token),
                        "expected a newline or `;` after the value of `\(key)`, found \(token.name)")
                }
                try file.record(
                    key: key, operation: operation, value: value, location: keyLocation, valueLocation: valueLocation)
            default:
                throw .syntax(location(of: token), "expected a setting such as `memory = 512`, found \(token.name)")
            }
        }
    }

    /// value := NUMBER | STRING | list. Leaves `token` on the token after the value.
    private mutating func parseValue(key: String, depth: Int) throws(XLConfigError) -> XLConfigValue {
        switch token.kind {
        case .number(let text):
            try advance()
            return .number(text)
        case .string(let text):
            try advance()
            return .string(text)
        case .openBracket:
            return try parseList(key: key, depth: depth + 1)
        case .key(let word):
            throw .syntax(
                location(of: token),
                "expected a value for `\(key)`, found the bare word `\(word)`; strings must be quoted, "
                    + "as in \(key) = \"\(word)\"")
        default:
            throw .syntax(
                location(of: token),
                "expected a value for `\(key)` (a number, a \"string\" or a [list]), found \(token.name)")
        }
    }

    /// list := '[' ... ']' with newlines allowed anywhere inside and one trailing comma.
    private mutating func parseList(key: String, depth: Int) throws(XLConfigError) -> XLConfigValue {
        let open = token
        guard depth <= Self.maximumListDepth else {
            throw .syntax(location(of: open), "lists nest more than \(Self.maximumListDepth) deep")
        }
        try advance()
        try skipNewlines()
        var values: [XLConfigValue] = []
        if token.kind == .closeBracket {
            try advance()
            return .list(values)
        }
        while true {
            values.append(try parseValue(key: key, depth: depth))
            try skipNewlines()
            switch token.kind {
            case .comma:
                try advance()
                try skipNewlines()
                if token.kind == .closeBracket {
                    try advance()
                    return .list(values)
                }
            case .closeBracket:
                try advance()
                return .list(values)
            default:
                throw .syntax(
                    location(of: token),
                    "expected `,` or `]` in the list for `\(key)` opened at line \(open.line) column \(open.column), "
                        + "found \(token.name)")
            }
        }
    }
}
