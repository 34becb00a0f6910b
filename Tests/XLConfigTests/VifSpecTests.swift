import Testing

@testable import XLConfig

func vif(_ spec: String) throws -> VifSpec {
    var warnings: [String] = []
    let parsed = try VifSpec.parse(spec, warnings: &warnings)
    #expect(warnings.isEmpty, "\(spec): \(warnings)")
    return parsed
}

/// Examples and keywords of xl-network-configuration(5).
@Suite struct VifSpecTests {
    @Test func manPageExamples() throws {
        let first = try vif("mac=00:16:3E:74:3d:76,model=rtl8139,bridge=xenbr0")
        #expect(first.mac?.description == "00:16:3e:74:3d:76")
        #expect(first.mac?.bytes == [0x00, 0x16, 0x3E, 0x74, 0x3D, 0x76])
        #expect(first.model == "rtl8139")
        #expect(first.bridge == "xenbr0")
        #expect(try vif("mac=00:16:3E:74:34:32").mac?.description == "00:16:3e:74:34:32")
        #expect(try vif("") == VifSpec())
    }

    @Test func everyKeyword() throws {
        let parsed = try vif(
            " mac=00:16:3e:5f:48:e4 , bridge=xenbr1, gatewaydev=eth0, ip=192.0.2.10 192.0.2.11, "
                + "script=vif-route, backend=netdom, vifname=web1-eth0, type=vif, rate=10Mb/s, devid=3, mtu=9000, "
                + "vlan=10p/20, untrusted, forwarddev=eth1, colo_sock_mirror_id=m1")
        #expect(parsed.mac == MACAddress("00:16:3e:5f:48:e4"))
        #expect(parsed.bridge == "xenbr1")
        #expect(parsed.gatewayDevice == "eth0")
        #expect(parsed.ip == "192.0.2.10 192.0.2.11")
        #expect(parsed.script == "vif-route")
        #expect(parsed.backendDomain == "netdom")
        #expect(parsed.vifname == "web1-eth0")
        #expect(parsed.type == .vif)
        #expect(parsed.rate?.text == "10Mb/s")
        #expect(parsed.devid == 3)
        #expect(parsed.mtu == 9000)
        #expect(parsed.vlan == "10p/20")
        #expect(parsed.trusted == false)
        #expect(parsed.coloOptions == ["forwarddev": "eth1", "colo_sock_mirror_id": "m1"])
        #expect(try vif("trusted").trusted == true)
        #expect(try vif("type=ioemu").type == .ioemu)
    }

    @Test func ratesAsLibxluComputesThem() throws {
        // "1MB/s@20ms": 20,000 bytes every 20,000 us (xl-network-configuration(5)).
        let cases: [(String, UInt64, UInt32)] = [
            ("1MB/s@20ms", 20_000, 20_000),
            ("10Mb/s", 62_500, 50_000),
            ("250KB/s", 12_500, 50_000),
            ("1GB/s@1s", 1_000_000_000, 1_000_000),
            ("8b/s@1", 1, 1_000_000),
            ("1000B/s@500us", 0, 500),
            ("1000B/s@500u", 0, 500),
            ("1MB/s@20m", 20_000, 20_000),
        ]
        for (text, bytes, interval) in cases {
            let rate = try VifRate(parsing: text)
            #expect(rate.bytesPerInterval == bytes, "\(text)")
            #expect(rate.intervalMicroseconds == interval, "\(text)")
        }
    }

    @Test func invalidRates() {
        let cases: [(String, String)] = [
            ("", "no rate specified in \"\""),
            ("@20ms", "no rate specified in \"@20ms\""),
            ("10Mb", "invalid rate \"10Mb\"; expected a rate such as 10Mb/s, 250KB/s or 1MB/s@20ms"),
            ("10Mx/s", "invalid rate \"10Mx/s\"; the unit must be B (bytes) or b (bits) per second"),
            ("fastB/s", "invalid rate \"fastB/s\"; expected a rate such as 10Mb/s, 250KB/s or 1MB/s@20ms"),
            ("0B/s", "rate overflow in \"0B/s\""),
            ("4294967296B/s", "rate overflow in \"4294967296B/s\""),
            ("1MB/s@soon", "invalid replenishment interval \"soon\"; expected e.g. 20ms, 500us or 1s"),
            ("1MB/s@0ms", "replenishment interval overflow in \"1MB/s@0ms\""),
            ("1MB/s@5000s", "replenishment interval overflow in \"1MB/s@5000s\""),
        ]
        for (text, message) in cases {
            #expect(throws: SpecStringError(message), "\(text)") { try VifRate(parsing: text) }
        }
    }

    @Test func macAddresses() {
        #expect(MACAddress("00-16-3e-00-00-01")?.description == "00:16:3e:00:00:01")
        #expect(MACAddress("02:00:00:00:00:01")?.isLocallyAdministered == true)
        #expect(MACAddress("01:00:5e:00:00:01")?.isMulticast == true)
        for bad in ["", "00:16:3e:00:00", "00:16:3e:00:00:01:02", "0:16:3e:0:0:1", "00:16:3e:00:00:0g", "00:16-3e:00:00:01", "001:6:3e:00:00:01"] {
            #expect(MACAddress(bad) == nil, "\(bad)")
        }
    }

    @Test func zeroMacMeansGenerate() throws {
        #expect(try vif("mac=00:00:00:00:00:00").mac == nil)
    }

    @Test func errors() {
        let cases: [(String, String)] = [
            ("mac=00:16:3e", "invalid mac \"00:16:3e\"; expected six two-digit hex groups such as 00:16:3e:12:34:56"),
            ("mac=01:16:3e:00:00:01", "mac 01:16:3e:00:00:01 is a multicast address (low bit of the first byte set); an interface needs a unicast address"),
            ("type=e1000", "invalid type \"e1000\"; expected vif or ioemu"),
            ("devid=-1", "invalid devid \"-1\"; expected a non-negative integer"),
            ("mtu=20", "invalid mtu \"20\"; expected an integer from 68 to 65535"),
            ("mtu=big", "invalid mtu \"big\"; expected an integer from 68 to 65535"),
            ("vifname=this-name-is-too-long", "invalid vifname \"this-name-is-too-long\"; interface names have 1 to 15 characters and no `/`, `:` or blanks"),
            ("vifname=a/b", "invalid vifname \"a/b\"; interface names have 1 to 15 characters and no `/`, `:` or blanks"),
            ("rate=fast", "invalid rate \"fast\"; expected a rate such as 10Mb/s, 250KB/s or 1MB/s@20ms"),
        ]
        for (spec, message) in cases {
            var warnings: [String] = []
            #expect(throws: SpecStringError(message), "\(spec)") { try VifSpec.parse(spec, warnings: &warnings) }
        }
    }

    @Test func unknownAndDeprecatedKeysWarn() throws {
        var warnings: [String] = []
        let parsed = try VifSpec.parse("bridge=xenbr0,,accel=x,netdev=eth0,speed=fast,promisc", warnings: &warnings)
        #expect(parsed.bridge == "xenbr0")
        #expect(parsed.gatewayDevice == "eth0")
        #expect(
            warnings == [
                "the accel parameter for vifs is not supported, ignored",
                "the netdev parameter is deprecated, use gatewaydev instead",
                "unrecognized vif parameter `speed=`, ignored",
                "unrecognized vif parameter `promisc`, ignored",
            ])
    }
}
