import Testing

@testable import XLConfig

/// The smallest config Domus accepts, plus `extra` lines.
func minimal(_ extra: String = "") -> String {
    "name = \"web1\"\nkernel = \"/boot/vmlinuz\"\n" + extra
}

func configuration(_ text: String) throws -> DomainConfiguration {
    try DomainConfiguration(parsing: text, sourceName: "guest.cfg")
}

/// The error building a configuration from `text` throws, or `nil`.
func configurationError(_ text: String) -> XLConfigError? {
    do {
        _ = try DomainConfiguration(parsing: text, sourceName: "guest.cfg")
        return nil
    } catch {
        return error
    }
}

@Suite struct DomainConfigurationTests {
    @Test func defaultsFollowXlAndLibxl() throws {
        let config = try configuration(minimal())
        #expect(config.name == "web1")
        #expect(config.type == .pv)
        #expect(config.uuid == nil)
        #expect(config.memoryMiB == 32)
        #expect(config.maxMemoryMiB == 32)
        #expect(config.vcpus == 1)
        #expect(config.maxVCPUs == 1)
        #expect(config.cpus == nil)
        #expect(config.cpusSoft == nil)
        #expect(config.cpuWeight == nil)
        #expect(config.cap == nil)
        #expect(config.kernel == "/boot/vmlinuz")
        #expect(config.ramdisk == nil)
        #expect(config.cmdline == nil)
        #expect(config.onPoweroff == .destroy)
        #expect(config.onReboot == .restart)
        #expect(config.onWatchdog == .destroy)
        #expect(config.onCrash == .destroy)
        #expect(config.onSoftReset == .softReset)
        #expect(config.disks.isEmpty)
        #expect(config.vifs.isEmpty)
        #expect(config.warnings.isEmpty)
        #expect(config.unsupportedFeatures().isEmpty)
        #expect(config.sourceName == "guest.cfg")
    }

    @Test func memoryAndMaxmem() throws {
        var config = try configuration(minimal("memory = 512"))
        #expect((config.memoryMiB, config.maxMemoryMiB) == (512, 512))
        config = try configuration(minimal("maxmem = 1024"))
        #expect((config.memoryMiB, config.maxMemoryMiB) == (1024, 1024))
        config = try configuration(minimal("memory = 512\nmaxmem = 2048"))
        #expect((config.memoryMiB, config.maxMemoryMiB) == (512, 2048))
        config = try configuration(minimal("memory = 0x100"))
        #expect(config.memoryMiB == 256)
    }

    @Test func quotedNumbersAreNumbersAsInXl() throws {
        let config = try configuration(minimal("memory = \"512\"\nvcpus = '2'"))
        #expect(config.memoryMiB == 512)
        #expect(config.vcpus == 2)
    }

    @Test func octalNumbersWarn() throws {
        let config = try configuration(minimal("memory = 0400"))
        #expect(config.memoryMiB == 256)
        #expect(
            config.warnings.map(\.description) == [
                "guest.cfg:3: warning: memory: 0400 has a leading 0, so xl reads it as octal: 256; write 256 to say so"
            ])
    }

    @Test func typeCheckingNamesTheKey() {
        let cases: [(String, String)] = [
            ("memory = \"lots\"", "guest.cfg:3: memory: expected an integer number of MiB, got the string \"lots\""),
            ("memory = [ 512 ]", "guest.cfg:3: memory: expected an integer number of MiB, got a list"),
            ("memory = 0", "guest.cfg:3: memory: expected an integer number of MiB from 1 to 16777216, got 0"),
            ("memory = '-5'", "guest.cfg:3: memory: expected an integer number of MiB from 1 to 16777216, got -5"),
            ("memory = 256\nmemory += 256", "guest.cfg:4: memory: += cannot be used with numbers; use memory = 256256"),
            ("maxmem = 'big'", "guest.cfg:3: maxmem: expected an integer number of MiB, got the string \"big\""),
            ("memory = 1024\nmaxmem = 512", "guest.cfg:4: maxmem: maxmem (512 MiB) must be at least memory (1024 MiB)"),
            ("vcpus = [1]", "guest.cfg:3: vcpus: expected an integer number of vCPUs, got a list"),
            ("vcpus = 0", "guest.cfg:3: vcpus: expected an integer number of vCPUs from 1 to 512, got 0"),
            ("vcpus = 4\nmaxvcpus = 2", "guest.cfg:4: maxvcpus: maxvcpus (2) must be at least vcpus (4)"),
            ("maxvcpus = 'x'", "guest.cfg:3: maxvcpus: expected an integer number of vCPUs, got the string \"x\""),
            ("cpu_weight = 0", "guest.cfg:3: cpu_weight: expected an integer scheduler weight from 1 to 65535, got 0"),
            ("cap = 'none'", "guest.cfg:3: cap: expected an integer percentage of one CPU, got the string \"none\""),
            ("kernel = [ '/a' ]", "guest.cfg:3: kernel: expected a path to the kernel image, got a list"),
            ("kernel = ''", "guest.cfg:3: kernel: the kernel path must not be empty"),
            ("ramdisk = [ ]", "guest.cfg:3: ramdisk: expected a path to the initial ramdisk, got an empty list"),
            ("cmdline = [ 'a' ]", "guest.cfg:3: cmdline: expected a kernel command line string, got a list"),
            ("root = [ ]", "guest.cfg:3: root: expected a root device string, got an empty list"),
            ("extra = [ 'a' ]", "guest.cfg:3: extra: expected a kernel command line string, got a list"),
            (
                "on_crash = 'reboot'",
                "guest.cfg:3: on_crash: unknown action \"reboot\"; expected one of destroy, restart, rename-restart, "
                    + "preserve, coredump-destroy, coredump-restart, soft-reset"
            ),
            ("on_reboot = [ 'restart' ]", "guest.cfg:3: on_reboot: expected an action (destroy, restart, rename-restart, preserve, coredump-destroy, coredump-restart, soft-reset), got a list"),
            (
                "uuid = 'not-a-uuid'",
                "guest.cfg:3: uuid: expected a UUID such as \"6b8a1f7e-4c2d-4f5e-9a1b-2c3d4e5f6a7b\", got \"not-a-uuid\""
            ),
            ("cpus = '0-3,x'", "guest.cfg:3: cpus: invalid CPU range \"x\" in \"0-3,x\"; expected all, N, N-M, node:N or ^N"),
            ("cpus = '3-1'", "guest.cfg:3: cpus: invalid CPU range \"3-1\" in \"3-1\"; expected all, N, N-M, node:N or ^N"),
            ("cpus = '^all'", "guest.cfg:3: cpus: cannot combine \"^\" and \"all\" in \"^all\""),
            ("cpus = [ '1', [ '2' ] ]", "guest.cfg:3: cpus: element 1 must be a CPU list string, got a list"),
            ("cpus_soft = [ ]", "guest.cfg:3: cpus_soft: expected a CPU list, got an empty list"),
            ("disk = 'phy:/dev/x,xvda,w'", "guest.cfg:3: disk: expected a list of disk specifications, as in disk = [ \"...\" ], got the string \"phy:/dev/x,xvda,w\""),
            ("disk = [ 'phy:/dev/x,xvda,w', [ 'a' ] ]", "guest.cfg:3: disk: element 1 must be a string, got a list"),
            ("vif = 'bridge=xenbr0'", "guest.cfg:3: vif: expected a list of vif specifications, as in vif = [ \"...\" ], got the string \"bridge=xenbr0\""),
            ("type = 'xen'", "guest.cfg:3: type: unknown guest type \"xen\"; expected \"pv\", \"pvh\" or \"hvm\""),
            ("builder = 'linux'", "guest.cfg:3: builder: unknown builder \"linux\"; expected \"generic\" or \"hvm\""),
            ("type = 'pv'\nbuilder = 'hvm'", "guest.cfg:4: builder: builder = \"hvm\" contradicts type = \"pv\""),
        ]
        for (line, message) in cases {
            let error = configurationError(minimal(line))
            #expect(error?.description == message, "\(line)")
        }
    }

    @Test func errorsAreTypedWithTheKey() {
        let error = configurationError(minimal("memory = \"lots\""))
        #expect(
            error
                == .invalidValue(
                    key: "memory", location: SourceLocation(source: "guest.cfg", line: 3, column: 1),
                    message: "expected an integer number of MiB, got the string \"lots\""))
        #expect(error?.key == "memory")
    }

    @Test func nameIsRequiredAndChecked() {
        #expect(
            configurationError("kernel = '/k'")?.description
                == "guest.cfg: name: a domain name is required, as in name = \"web1\"")
        let cases: [(String, String)] = [
            ("''", "the domain name must not be empty"),
            ("'1234'", "invalid domain name \"1234\"; xl reads an all-digit name as a domain id"),
            ("1234", "invalid domain name \"1234\"; xl reads an all-digit name as a domain id"),
            ("'web server'", "invalid domain name \"web server\"; use letters, digits, `_`, `.`, `+` and `-`"),
            ("'a/b'", "invalid domain name \"a/b\"; use letters, digits, `_`, `.`, `+` and `-`"),
            ("'-x'", "invalid domain name \"-x\"; it must not start with `-`"),
            ("'Domain-0'", "\"Domain-0\" is the name of the control domain"),
            ("'" + String(repeating: "a", count: 65) + "'", "the domain name has 65 characters; at most 64 are allowed"),
            ("[ 'a' ]", "expected a domain name, got a list"),
        ]
        for (value, message) in cases {
            let error = configurationError("name = \(value)\nkernel = '/k'")
            #expect(error?.description == "guest.cfg:1: name: \(message)", "\(value)")
        }
    }

    @Test func acceptableNames() throws {
        for name in ["web1", "db.example.com", "vm_2", "test-vm+ci", "1st-guest", "Debian12"] {
            #expect(try configuration("name = '\(name)'\nkernel = '/k'").name == name)
        }
    }

    @Test func onlyPVIsSupported() throws {
        #expect(try configuration(minimal("type = 'pv'")).type == .pv)
        let generic = try configuration(minimal("builder = 'generic'"))
        #expect(generic.type == .pv)
        #expect(generic.warnings.map(\.message) == ["builder is deprecated; write type = \"pv\""])
        #expect(
            configurationError(minimal("type = \"hvm\""))?.description
                == "guest.cfg:3: type = \"hvm\" is not supported by Domus yet")
        #expect(
            configurationError(minimal("type = 'pvh'"))?.description
                == "guest.cfg:3: type = \"pvh\" is not supported by Domus yet")
        #expect(
            configurationError(minimal("builder = 'hvm'"))?.description
                == "guest.cfg:3: builder = \"hvm\" is not supported by Domus yet")
        // The type is checked before anything else, so an HVM config without a kernel
        // still gets the clear answer.
        #expect(
            configurationError("name = 'w'\ntype = 'hvm'\nboot = 'c'")
                == .unsupported(
                    key: "type", location: SourceLocation(source: "guest.cfg", line: 2, column: 1),
                    message: "type = \"hvm\" is not supported by Domus yet"))
    }

    @Test func bootloaderAndFirmwareAreRefused() {
        #expect(
            configurationError("name = 'a'\nbootloader = 'pygrub'")?.description
                == "guest.cfg:2: bootloader = \"pygrub\" is not supported by Domus yet; boot the guest's kernel "
                + "directly with kernel = \"/path/to/vmlinuz\" (and ramdisk = \"...\")")
        #expect(configurationError(minimal("firmware = 'pvgrub64'"))?.key == "firmware")
    }

    @Test func kernelIsRequired() {
        #expect(
            configurationError("name = 'a'")?.description
                == "guest.cfg: kernel: a PV guest needs kernel = \"/path/to/vmlinuz\" (Domus runs no bootloader)")
    }

    @Test func commandLineCompositionFollowsXl() throws {
        #expect(try configuration(minimal()).cmdline == nil)
        #expect(try configuration(minimal("root = '/dev/xvda1 ro'")).cmdline == "root=/dev/xvda1 ro")
        #expect(try configuration(minimal("extra = 'console=hvc0'")).cmdline == "console=hvc0")
        #expect(
            try configuration(minimal("root = '/dev/xvda1 ro'\nextra = 'console=hvc0'")).cmdline
                == "root=/dev/xvda1 ro console=hvc0")
        #expect(try configuration(minimal("extra = 'a'\nextra += ' b'")).cmdline == "a b")
        #expect(try configuration(minimal("cmdline = ''")).cmdline == "")
        let both = try configuration(minimal("cmdline = 'quiet'\nroot = '/dev/xvda'\nextra = 'x'"))
        #expect(both.cmdline == "quiet")
        #expect(
            both.warnings.map(\.description) == [
                "guest.cfg:3: warning: cmdline: ignoring root= and extra= in favour of cmdline=, as xl does"
            ])
    }

    @Test func ramdiskUuidAndScheduler() throws {
        let config = try configuration(
            minimal(
                """
                ramdisk = "/boot/initrd.img"
                uuid = "6B8A1F7E-4c2d-4f5e-9a1b-2c3d4e5f6a7b"
                cpu_weight = 512
                cap = 50
                """))
        #expect(config.ramdisk == "/boot/initrd.img")
        #expect(config.uuid?.description == "6b8a1f7e-4c2d-4f5e-9a1b-2c3d4e5f6a7b")
        #expect(config.uuid?.bytes.first == 0x6B)
        #expect(config.uuid?.bytes.count == 16)
        #expect(config.cpuWeight == 512)
        #expect(config.cap == 50)
    }

    @Test func uuidParsing() {
        #expect(DomainUUID("00000000-0000-0000-0000-000000000000") != nil)
        #expect(DomainUUID("6b8a1f7e4c2d4f5e9a1b2c3d4e5f6a7b") == nil)
        #expect(DomainUUID("6b8a1f7e-4c2d-4f5e-9a1b-2c3d4e5f6a7") == nil)
        #expect(DomainUUID("6b8a1f7e-4c2d-4f5e-9a1b_2c3d4e5f6a7b") == nil)
        #expect(DomainUUID("6b8a1f7e-4c2d-4f5e-9a1b-2c3d4e5f6a7g") == nil)
        #expect(DomainUUID("") == nil)
    }

    @Test func vcpusAndAffinity() throws {
        let config = try configuration(
            minimal(
                """
                vcpus = 2
                maxvcpus = 4
                cpus = "0-3,5,^1"
                cpus_soft = [ "2", "3-8,^5", "all", "nodes:0-1,^node:2", "7" ]
                """))
        #expect(config.vcpus == 2)
        #expect(config.maxVCPUs == 4)
        guard case .allVCPUs(let hard)? = config.cpus else {
            Issue.record("cpus should apply to all vCPUs")
            return
        }
        #expect(hard.resolve(hostCPUCount: 8) == [0, 2, 3, 5])
        #expect(hard.description == "0-3,5,^1")
        guard case .perVCPU(let soft)? = config.cpusSoft else {
            Issue.record("cpus_soft should be per vCPU")
            return
        }
        #expect(soft.map(\.text) == ["2", "3-8,^5", "all", "nodes:0-1,^node:2"])
        #expect(soft[1].resolve(hostCPUCount: 16) == [3, 4, 6, 7, 8])
        #expect(soft[2].resolve(hostCPUCount: 3) == [0, 1, 2])
        #expect(soft[3].resolve(hostCPUCount: 8, cpusOfNode: { [$0 * 2, $0 * 2 + 1] }) == [0, 1, 2, 3])
        #expect(config.warnings.map(\.message) == ["5 entries for 4 vCPUs; the extra entries are ignored, as in xl"])
        #expect(try configuration(minimal("cpus = 3")).cpus == .allVCPUs(try CPUList(parsing: "3")))
    }

    @Test func cpuListResolveClampsToTheHost() throws {
        let list = try CPUList(parsing: "all,^2, 6-100")
        #expect(list.resolve(hostCPUCount: 8) == [0, 1, 3, 4, 5, 6, 7])
        #expect(list.resolve(hostCPUCount: 0).isEmpty)
        #expect(try CPUList(parsing: "40-50").resolve(hostCPUCount: 4).isEmpty)
        #expect(throws: SpecStringError("empty CPU list")) { try CPUList(parsing: ",") }
    }

    @Test func shutdownActions() throws {
        let config = try configuration(
            minimal(
                """
                on_poweroff = "preserve"
                on_reboot = "rename-restart"
                on_watchdog = "coredump-restart"
                on_crash = "coredump-destroy"
                on_soft_reset = "destroy"
                """))
        #expect(config.onPoweroff == .preserve)
        #expect(config.onReboot == .renameRestart)
        #expect(config.onWatchdog == .coredumpRestart)
        #expect(config.onCrash == .coredumpDestroy)
        #expect(config.onSoftReset == .destroy)
        #expect(
            config.unsupportedFeatures().map(\.description) == [
                "on_watchdog: the action \"coredump-restart\" is not carried out by Domus yet",
                "on_crash: the action \"coredump-destroy\" is not carried out by Domus yet",
            ])
        #expect(ShutdownAction.allCases.filter(\.isExecutedByDomus) == [.destroy, .restart, .renameRestart, .preserve])
        let softReset = try configuration(minimal("on_crash = 'soft-reset'"))
        #expect(softReset.unsupportedFeatures().map(\.key) == ["on_crash"])
    }

    @Test func unknownKeysWarnWithSuggestions() throws {
        let config = try configuration(
            minimal(
                """
                memroy = 512
                VCPUS = 2
                frobnicate = 1
                vnc = 1
                pool = "Pool-0"
                """))
        #expect(
            config.warnings.map(\.description) == [
                "guest.cfg:3: warning: memroy: unknown key, ignored (did you mean memory?)",
                "guest.cfg:4: warning: VCPUS: unknown key, ignored (did you mean vcpus?)",
                "guest.cfg:5: warning: frobnicate: unknown key, ignored",
                "guest.cfg:6: warning: vnc: xl setting not implemented by Domus, ignored",
                "guest.cfg:7: warning: pool: xl setting not implemented by Domus, ignored",
            ])
        #expect(config.memoryMiB == 32)
    }

    @Test func deviceKeysAreUnsupportedFeatures() throws {
        let config = try configuration(
            minimal(
                """
                pci = [ '01:00.0' ]
                vfb = [ 'vnc=1' ]
                channel = [ ]
                """))
        #expect(
            config.unsupportedFeatures().map(\.description) == [
                "pci: Domus does not support PCI passthrough yet",
                "vfb: Domus does not support virtual framebuffers yet",
            ])
        #expect(config.warnings.isEmpty)
    }

    @Test func disksAndVifsAreParsedButUnsupported() throws {
        let config = try configuration(
            minimal(
                """
                disk = [ 'phy:/dev/vg/root,xvda,w', 'file:/srv/data.img,xvdb,r' ]
                vif = [ 'mac=00:16:3e:00:00:01,bridge=xenbr0', '' ]
                """))
        #expect(config.disks.map(\.vdev) == ["xvda", "xvdb"])
        #expect(config.vifs.count == 2)
        #expect(config.vifs[1] == VifSpec())
        #expect(
            config.unsupportedFeatures().map(\.description) == [
                "disk: 2 disks configured, but Domus has no block backend yet",
                "vif: 2 vifs configured, but Domus has no network backend yet",
            ])
        #expect(try configuration(minimal("disk = [ ]\nvif = [ ]")).unsupportedFeatures().isEmpty)
    }

    @Test func deviceErrorsNameTheEntry() {
        let cases: [(String, String)] = [
            (
                "disk = [ 'phy:/dev/a,xvda,w', '/dev/b,qcow3,xvdb' ]",
                "guest.cfg:3: disk[1] \"/dev/b,qcow3,xvdb\": unknown format \"qcow3\"; expected raw, qcow, qcow2, vhd, "
                    + "qed or empty (positional parameters are target,format,vdev,access; \"qcow3\" is in the format "
                    + "position)"
            ),
            (
                "disk = [ 'phy:/dev/a,xvda,w', 'phy:/dev/b,d0p0,w' ]",
                "guest.cfg:3: disk[1] \"phy:/dev/b,d0p0,w\": vdev d0p0 is the same device as disk[0]'s xvda"
            ),
            (
                "vif = [ 'mac=00:16:3e:zz:00:01' ]",
                "guest.cfg:3: vif[0] \"mac=00:16:3e:zz:00:01\": invalid mac \"00:16:3e:zz:00:01\"; expected six "
                    + "two-digit hex groups such as 00:16:3e:12:34:56"
            ),
            (
                "vif = [ 'mac=00:16:3e:00:00:01', 'mac=00:16:3E:00:00:01' ]",
                "guest.cfg:3: vif[1] \"mac=00:16:3E:00:00:01\": mac 00:16:3e:00:00:01 is already used by vif[0]"
            ),
            (
                "vif = [ 'bridge=a', 'devid=0' ]",
                "guest.cfg:3: vif[1] \"devid=0\": devid 0 is already used by vif[0]"
            ),
        ]
        for (line, message) in cases {
            #expect(configurationError(minimal(line))?.description == message, "\(line)")
        }
    }

    @Test func vifWarningsNameTheEntry() throws {
        let config = try configuration(minimal("vif = [ 'bridge=xenbr0,netdev=eth0,speed=fast' ]"))
        #expect(
            config.warnings.map(\.description) == [
                "guest.cfg:3: warning: vif[0]: the netdev parameter is deprecated, use gatewaydev instead",
                "guest.cfg:3: warning: vif[0]: unrecognized vif parameter `speed=`, ignored",
            ])
        #expect(config.vifs.first?.gatewayDevice == "eth0")
    }
}
