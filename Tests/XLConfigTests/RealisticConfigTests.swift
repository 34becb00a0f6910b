import Testing

@testable import XLConfig

/// Whole files of the kinds operators have in /etc/xen.
@Suite struct RealisticConfigTests {
    /// Shaped like Xen's tools/examples/xlexample.pvlinux.
    @Test func minimalPVLinuxExample() throws {
        let config = try configuration(
            """
            # =====================================================================
            # Example PV Linux guest configuration
            # =====================================================================

            # Guest name
            name = "example.pvlinux"

            # 128-bit UUID for the domain as a hexadecimal number.
            #uuid = "XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX"

            # Kernel image to boot
            kernel = "/boot/vmlinuz"

            # Ramdisk (optional)
            #ramdisk = "/boot/initrd.gz"

            # Kernel command line options
            extra = "root=/dev/xvda1"

            # Initial memory allocation (MB)
            memory = 128

            # Maximum memory (MB)
            #maxmem = 512

            # Number of VCPUS
            vcpus = 2

            # Network devices
            vif = [ '' ]

            # Disk Devices
            disk = [ '/dev/vg/guest-volume,raw,xvda,rw' ]
            """)
        #expect(config.name == "example.pvlinux")
        #expect(config.kernel == "/boot/vmlinuz")
        #expect(config.cmdline == "root=/dev/xvda1")
        #expect(config.memoryMiB == 128)
        #expect(config.maxMemoryMiB == 128)
        #expect(config.vcpus == 2)
        #expect(config.maxVCPUs == 2)
        #expect(config.vifs == [VifSpec()])
        #expect(config.disks.count == 1)
        #expect(config.disks.first?.target == "/dev/vg/guest-volume")
        #expect(config.disks.first?.deviceNumber == 202 << 8)
        #expect(config.warnings.isEmpty)
        #expect(config.unsupportedFeatures().map(\.key) == ["disk", "vif"])
    }

    /// Shaped like what xen-tools' xen-create-image writes for a Debian domU: numbers in
    /// quotes, xm-era keys, `file:` prefixes, partitions as vdevs.
    @Test func xenToolsDebianDomU() throws {
        let config = try configuration(
            """
            #
            # Configuration file for the Xen instance debian12, created
            # by xen-tools.
            #

            #
            #  Kernel + memory size
            #
            kernel      = '/boot/vmlinuz-6.1.0-18-amd64'
            extra       = 'elevator=noop console=hvc0'
            ramdisk     = '/boot/initrd.img-6.1.0-18-amd64'

            vcpus       = '2'
            memory      = '1024'

            #
            #  Disk device(s).
            #
            root        = '/dev/xvda2 ro'
            disk        = [
                              'file:/srv/xen/domains/debian12/disk.img,xvda2,w',
                              'file:/srv/xen/domains/debian12/swap.img,xvda1,w',
                          ]

            #
            #  Hostname
            #
            name        = 'debian12'

            #
            #  Networking
            #
            dhcp        = 'dhcp'
            vif         = [ 'mac=00:16:3E:2B:8A:61,bridge=xenbr0' ]

            #
            #  Behaviour
            #
            on_poweroff = 'destroy'
            on_reboot   = 'restart'
            on_crash    = 'restart'
            """)
        #expect(config.name == "debian12")
        #expect(config.memoryMiB == 1024)
        #expect(config.vcpus == 2)
        #expect(config.ramdisk == "/boot/initrd.img-6.1.0-18-amd64")
        #expect(config.cmdline == "root=/dev/xvda2 ro elevator=noop console=hvc0")
        #expect(config.onCrash == .restart)
        #expect(config.disks.map(\.vdev) == ["xvda2", "xvda1"])
        #expect(config.disks.map(\.target) == ["/srv/xen/domains/debian12/disk.img", "/srv/xen/domains/debian12/swap.img"])
        #expect(config.disks.map(\.deviceNumber) == [(202 << 8) | 2, (202 << 8) | 1])
        #expect(config.vifs.first?.mac?.description == "00:16:3e:2b:8a:61")
        #expect(config.warnings.map(\.description) == ["guest.cfg:33: warning: dhcp: unknown key, ignored"])
    }

    /// A config exercising the syntax corners: semicolons, `+=`, hex, nested lists in keys
    /// Domus ignores, comments inside lists.
    @Test func denseConfig() throws {
        let config = try configuration(
            """
            name="dense"; type="pv"; memory=0x400; maxmem=2048
            kernel="/boot/vmlinuz"; ramdisk="/boot/initrd"
            cmdline="console=hvc0"
            cmdline+=" earlyprintk=xen"
            vcpus=2; maxvcpus=8; cpus=["0", "1-3"]; cpu_weight=512; cap=0
            uuid="0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
            on_watchdog="preserve"
            vnuma=[ ["pnode=0","size=1024","vcpus=0-3","vdistances=10,20"],
                    ["pnode=1","size=1024","vcpus=4-7","vdistances=20,10"] ]
            """)
        #expect(config.memoryMiB == 1024)
        #expect(config.maxMemoryMiB == 2048)
        #expect(config.cmdline == "console=hvc0 earlyprintk=xen")
        #expect(config.maxVCPUs == 8)
        #expect(config.cpus == .perVCPU([try CPUList(parsing: "0"), try CPUList(parsing: "1-3")]))
        #expect(config.cpuWeight == 512)
        #expect(config.cap == 0)
        #expect(config.onWatchdog == .preserve)
        #expect(config.uuid?.description == "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
        #expect(config.unsupportedFeatures().map(\.description) == ["vnuma: Domus does not support virtual NUMA topology yet"])
    }

    /// The usual pygrub config is refused with the way forward.
    @Test func pygrubConfig() {
        let error = configurationError(
            """
            name       = "centos"
            bootloader = "pygrub"
            memory     = 2048
            vcpus      = 2
            disk       = [ "phy:/dev/vg0/centos,xvda,w" ]
            vif        = [ "bridge=xenbr0" ]
            """)
        #expect(error?.key == "bootloader")
        #expect(error?.description.hasPrefix("guest.cfg:2: bootloader = \"pygrub\" is not supported by Domus yet") == true)
    }

    /// Shaped like Xen's tools/examples/xlexample.hvm.
    @Test func hvmExampleIsRefusedClearly() {
        let error = configurationError(
            """
            type = "hvm"
            name = "example.hvm"
            memory = 128
            vcpus = 2
            vif = [ 'type=ioemu, bridge=xenbr0' ]
            disk = [ '/dev/vg/guest-volume,raw,hda,rw', '/root/image.iso,raw,hdc,devtype=cdrom' ]
            vnc = 1
            """)
        #expect(error?.description == "guest.cfg:1: type = \"hvm\" is not supported by Domus yet")
    }

    @Test func commandLineOverridesOnARealFile() throws {
        let config = try DomainConfiguration(
            parsing: minimal("memory = 256\nextra = 'console=hvc0'"), sourceName: "/etc/xen/web1.cfg",
            overrides: ["memory=512", "extra+=\" single\"; vcpus=2"])
        #expect(config.memoryMiB == 512)
        #expect(config.vcpus == 2)
        #expect(config.cmdline == "console=hvc0 single")
        #expect(
            throws: XLConfigError.invalidValue(
                key: "memory", location: SourceLocation(source: "command line argument 1", line: 1, column: 1),
                message: "expected an integer number of MiB, got the string \"lots\"")
        ) {
            try DomainConfiguration(parsing: minimal(), sourceName: "/etc/xen/web1.cfg", overrides: ["memory='lots'"])
        }
    }

    /// `xl create /dev/null 'name="x"' ...`: an empty file and everything on the command line.
    @Test func everythingFromTheCommandLine() throws {
        let config = try DomainConfiguration(
            parsing: [UInt8](), sourceName: "/dev/null",
            overrides: ["name=\"scratch\"", "kernel=\"/boot/vmlinuz\"; memory=64"])
        #expect(config.name == "scratch")
        #expect(config.memoryMiB == 64)
    }
}
