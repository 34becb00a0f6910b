import Foundation
import Testing
@testable import Toolstack

/// xl's output formats, the control protocol's encoding, and the daemon's small parts
/// that need no KVM.
@Suite("xl formats and the control protocol")
struct CLIFormatTests {
    static func domain(_ name: String = "web", id: UInt16 = 3, memoryKB: UInt64 = 512 * 1024, vcpus: Int = 2) -> DomainStatus {
        DomainStatus(domid: id, name: name, memoryKB: memoryKB, vcpusOnline: vcpus, running: true, cpuTimeNS: 12_345_000_000)
    }

    @Test("list: xl's header and row layout")
    func listRows() {
        #expect(XLFormat.listHeader == "Name                                        ID   Mem VCPUs\tState\tTime(s)")
        // printf("%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f", ...)
        let row = XLFormat.listRow(Self.domain())
        #expect(row == "web" + String(repeating: " ", count: 37) + "     3   512     2     r-----      12.3")
        let text = XLFormat.list([Self.domain("Domain-0", id: 0, memoryKB: 4096 * 1024), Self.domain()])
        #expect(text.hasPrefix(XLFormat.listHeader + "\nDomain-0 "))
        #expect(text.hasSuffix("\n"))
        #expect(text.split(separator: "\n").count == 3)
    }

    @Test("state letters follow xl: r b p s, the shutdown reason's letter, d")
    func stateLetters() {
        var status = Self.domain()
        #expect(XLFormat.stateLetters(status) == "r-----")
        status.running = false
        status.blocked = true
        #expect(XLFormat.stateLetters(status) == "-b----")
        status.blocked = false
        status.paused = true
        #expect(XLFormat.stateLetters(status) == "--p---")
        status.paused = false
        status.shutdown = true
        status.shutdownReason = "crash"
        #expect(XLFormat.stateLetters(status) == "---sc-")
        status.shutdownReason = "poweroff"
        #expect(XLFormat.stateLetters(status) == "---s--")
        status.shutdownReason = "reboot"
        #expect(XLFormat.stateLetters(status) == "---sr-")
        status.shutdownReason = "watchdog"
        #expect(XLFormat.stateLetters(status) == "---sw-")
        status.shutdown = false
        status.shutdownReason = nil
        status.dying = true
        #expect(XLFormat.stateLetters(status) == "-----d")
    }

    @Test("vcpu-list: xl's columns, online and offline vCPUs")
    func vcpuList() {
        #expect(XLFormat.vcpuListHeader
            == "Name                                ID  VCPU   CPU State   Time(s) Affinity (Hard / Soft)")
        let domain = Self.domain("idle", id: 1)
        let online = VCPUStatus(vcpu: 0, online: true, running: false, blocked: true, cpu: 1, cpuTimeNS: 1_500_000_000)
        // "%-32s %5u %5u" "%5u %3c%c- " "%9.1f  " "all / all"
        #expect(XLFormat.vcpuRow(domain, online) == "idle" + String(repeating: " ", count: 28) + "     1     0    1   -b-       1.5  all / all")
        let offline = VCPUStatus(vcpu: 1, online: false, running: false, blocked: false, cpu: nil, cpuTimeNS: 0)
        #expect(XLFormat.vcpuRow(domain, offline) == "idle" + String(repeating: " ", count: 28) + "     1     1    -   --p       0.0  all / all")
        var both = domain
        both.vcpus = [online, offline]
        #expect(XLFormat.vcpuList([both]).split(separator: "\n").count == 3)
    }

    @Test("uptime: xl's uptime_to_string, long and short")
    func uptime() {
        #expect(XLFormat.uptimeString(0, short: false) == " 0:00:00")
        #expect(XLFormat.uptimeString(3661, short: false) == " 1:01:01")
        #expect(XLFormat.uptimeString(86400 + 7200 + 60, short: false) == "1 day,  2:01:00")
        #expect(XLFormat.uptimeString(3 * 86400 + 45000, short: true) == "3 days, 12:30")
        var status = Self.domain("web", id: 7)
        status.startTime = 1000
        let now = Date(timeIntervalSince1970: 1000 + 125)
        let text = XLFormat.uptime([status], now: now, short: false)
        // "%-33s %4s %s": the name padded to 33, a space, the id right-aligned in 4.
        #expect(text == "Name" + String(repeating: " ", count: 32) + "ID Uptime\nweb" + String(repeating: " ", count: 34) + "7  0:02:05\n")
        let short = XLFormat.uptime([status], now: now, short: true, timeZone: TimeZone(identifier: "UTC") ?? .current)
        #expect(short == " 00:18:45 up  0:02, web (7)\n")
    }

    @Test("info: `key : value` with xl's padding, and one key's value alone")
    func info() {
        let host = HostInfo(host: "box", release: "6.1.0", version: "#1 SMP", machine: "x86_64", nrCPUs: 4, cpuMHz: 2596.098,
                            totalMemoryMB: 8000, freeMemoryMB: 6000, uptimeSeconds: 10, hostCPUTimeNS: 0, xenMajor: 4, xenMinor: 19,
                            xenExtra: ".0-domus", xenCaps: "xen-3.0-x86_64", xenPagesize: 4096, virtStart: 0xffff_8000_0000_0000,
                            commandLine: "domusd", domusVersion: "0.2.0", compiler: "Swift", nrDomains: 2)
        let text = XLFormat.info(host)
        #expect(text.hasPrefix("host                   : box\nrelease                : 6.1.0\n"))
        #expect(text.contains("\nnr_cpus                : 4\n"))
        #expect(text.contains("\ncpu_mhz                : 2596.098\n"))
        #expect(text.contains("\nxen_version            : 4.19.0-domus\n"))
        #expect(text.contains("\nplatform_params        : virt_start=0xffff800000000000\n"))
        #expect(text.hasSuffix("xend_config_format     : 4\n"))
        #expect(XLFormat.info(host, only: "total_memory") == "8000\n")
    }

    @Test("sizes as xl's parse_mem_size_kb reads them")
    func memorySizes() {
        #expect(XLFormat.parseMemorySizeKB("512") == 512 * 1024)
        #expect(XLFormat.parseMemorySizeKB("256m") == 256 * 1024)
        #expect(XLFormat.parseMemorySizeKB("1G") == 1024 * 1024)
        #expect(XLFormat.parseMemorySizeKB("1t") == 1 << 30)
        #expect(XLFormat.parseMemorySizeKB("2048k") == 2048)
        #expect(XLFormat.parseMemorySizeKB("4096b") == 4)
        #expect(XLFormat.parseMemorySizeKB("lots") == nil)
        #expect(XLFormat.parseMemorySizeKB("1gb") == nil)
        #expect(XLFormat.parseMemorySizeKB("") == nil)
        #expect(XLFormat.parseMemorySizeKB("99999999999999999999") == nil)
        #expect(XLFormat.parseMemorySizeKB("18014398509481984t") == nil)
    }

    @Test("list -l: libxl's key order, yajl's indentation")
    func listLong() {
        var status = Self.domain("web", id: 4)
        status.config = DomainConfigJSON(hostName: "web", cpus: 2, memoryKB: 1024)
        let text = XLFormat.listLong([status])
        #expect(text.hasPrefix("[\n    {\n        \"domid\": 4,\n        \"config\": {\n            \"c_info\": {\n"))
        let data = Data(text.utf8)
        let parsed = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]]
        #expect(parsed?.first?["domid"] as? Int == 4)
        #expect(OrderedJSON.string("a\"b\n").text() == "\"a\\\"b\\n\"")
    }

    @Test("requests encode as one JSON line with the documented field names")
    func requestEncoding() throws {
        var request = ControlRequest(.memSet, domain: "web")
        request.memoryKB = 524288
        let line = ControlCodec.encode(request)
        #expect(line.last == 0x0a)
        #expect(line.dropLast().contains(0x0a) == false)
        let text = String(decoding: line, as: UTF8.self)
        #expect(text.contains("\"op\":\"mem-set\"") && text.contains("\"memory_kb\":524288") && text.contains("\"domain\":\"web\""))
        let decoded = try ControlCodec.decode(ControlRequest.self, from: Array(line.dropLast()))
        #expect(decoded == request && decoded.operation == .memSet)
        var create = ControlRequest(.create)
        create.config = "name = \"a\"\nkernel = \"/k\"\n"
        let createLine = ControlCodec.encode(create)
        #expect(createLine.dropLast().contains(0x0a) == false, "newlines inside strings are escaped")
    }

    @Test("responses round-trip; malformed input is a usage error naming the problem")
    func responses() throws {
        var response = ControlResponse()
        response.domains = [Self.domain()]
        response.warnings = ["x.cfg:3: warning: memroy: unknown key"]
        let decoded = try ControlCodec.decode(ControlResponse.self, from: Array(ControlCodec.encode(response).dropLast()))
        #expect(decoded == response)
        let failure = ControlResponse.failure(ControlError(.notFound, "domain \"x\" does not exist"))
        let text = String(decoding: ControlCodec.encode(failure), as: UTF8.self)
        #expect(text.contains("\"ok\":false") && text.contains("\"error_kind\":\"not_found\""))
        for bad in ["not json", "{\"domain\":\"x\"}", "{\"op\":3}", "[]"] {
            let error = try #require(throws: ControlError.self) { try ControlCodec.decode(ControlRequest.self, from: Array(bad.utf8)) }
            #expect(error.kind == .usage && error.message.hasPrefix("malformed message"), "\(bad): \(error)")
        }
        let missing = try #require(throws: ControlError.self) {
            try ControlCodec.decode(ControlRequest.self, from: Array("{\"domain\":\"x\"}".utf8))
        }
        #expect(missing.message.contains("\"op\""))
    }

    @Test("logfmt lines: time, level, msg, fields; values quoted when needed")
    func structuredLog() {
        let line = StructuredLog.format(time: Date(timeIntervalSince1970: 0), level: .info, message: "domain created",
                                        fields: [("domid", "1"), ("name", "web 1"), ("path", "a=b\"c\n")])
        #expect(line == "time=1970-01-01T00:00:00.000Z level=info msg=\"domain created\" domid=1 name=\"web 1\" path=\"a=b\\\"c\\n\"")
        #expect(StructuredLog.Level(name: "warn") == .warning)
        #expect(StructuredLog.Level(name: "loud") == nil)
    }

    @Test("console log: keeps the last bytes, subscribes without losing or repeating output")
    func consoleLog() {
        let log = ConsoleLog(capacity: 8)
        log.append(Array("hello ".utf8))
        log.append(Array("world".utf8))
        #expect(String(decoding: log.recent(), as: UTF8.self) == "lo world")
        #expect(String(decoding: log.recent(3), as: UTF8.self) == "rld")
        let received = DaemonFixtures.Lines()
        let subscription = log.subscribe(history: 2) { event in
            if case let .output(bytes) = event { received.append(String(decoding: bytes, as: UTF8.self)) } else { received.append("<closed>") }
        }
        #expect(subscription.map { String(decoding: $0.history, as: UTF8.self) } == "ld")
        log.append(Array("!".utf8))
        log.close()
        log.append(Array("late".utf8))
        #expect(received.all == ["!", "<closed>"])
        #expect(log.subscribe(history: nil) { _ in }.map { _ in true } == nil)
        #expect(log.totalBytes == 12)
    }

    @Test("console queue: bounded, drops the oldest, history goes first")
    func byteQueue() {
        let queue = ByteQueue(limit: 4)
        queue.push([1, 2])
        queue.push([3, 4])
        queue.push([5])
        #expect(queue.dropped == 2)
        queue.pushFirst([0])
        #expect(queue.pop(timeout: 0.1) == [0, 3, 4, 5])
        #expect(queue.pop(timeout: 0.05) == [])
        queue.close()
        queue.push([9])
        #expect(queue.pop(timeout: 0.1) == nil)
    }

    @Test("host probes parse /proc's formats")
    func hostProbes() {
        let memory = HostProbe.parseMemInfo("MemTotal:       16384 kB\nMemFree:  100 kB\nMemAvailable:   8192 kB\n")
        #expect(memory.total == 16384 && memory.available == 8192)
        #expect(HostProbe.parseMemInfo("MemTotal: 10 kB\nMemFree: 4 kB\n").available == 4)
        let busy = HostProbe.parseBusyTime("cpu  100 0 50 1000 7 0 0 0 0 0\ncpu0 1 2 3 4\n")
        #expect(busy == 150 * (1_000_000_000 / UInt64(sysconf(Int32(_SC_CLK_TCK)))))
        #expect(HostProbe.parseBusyTime("") == 0)
    }
}
