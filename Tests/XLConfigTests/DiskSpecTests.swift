import Testing

@testable import XLConfig

/// The equivalence classes of xl-disk-configuration(5) and tools/xl/check-xl-disk-parse.
@Suite struct DiskSpecTests {
    @Test(arguments: [
        "/dev/vg/guest-volume,,hda",
        "/dev/vg/guest-volume,raw,hda,rw",
        "format=raw, vdev=hda, access=rw, target=/dev/vg/guest-volume",
        "raw:/dev/vg/guest-volume,hda,w",
    ])
    func plainDiskForms(spec: String) throws {
        let disk = try DiskSpec.parse(spec)
        #expect(disk.target == "/dev/vg/guest-volume")
        #expect(disk.vdev == "hda")
        #expect(disk.format == .raw)
        #expect(!disk.isReadOnly)
        #expect(!disk.isCDROM)
        #expect(!disk.isRemovable)
        #expect(disk.deviceNumber == 3 << 8)
    }

    @Test(arguments: [
        "/root/image.iso,,hdc,cdrom",
        "/root/image.iso,,hdc,,cdrom",
        "/root/image.iso,raw,hdc,devtype=cdrom",
        "format=raw, vdev=hdc, access=ro, devtype=cdrom, target=/root/image.iso",
        "raw:/root/image.iso,hdc:cdrom,ro",
    ])
    func cdromForms(spec: String) throws {
        let disk = try DiskSpec.parse(spec)
        #expect(disk.target == "/root/image.iso")
        #expect(disk.vdev == "hdc")
        #expect(disk.format == .raw)
        #expect(disk.isCDROM)
        #expect(disk.isRemovable)
        #expect(disk.isReadOnly)
        #expect(disk.deviceNumber == (22 << 8))
    }

    @Test(arguments: [
        "devtype=cdrom,,,hdc",
        ",,hdc:cdrom,r",
        ",hdc:cdrom,r",
        "vdev=hdc,access=r,devtype=cdrom,target=",
        ",empty,hdc:cdrom,r",
        "vdev=hdc,access=r,devtype=cdrom,format=empty",
        "vdev=hdc,access=r,devtype=cdrom",
    ])
    func emptyCDROMForms(spec: String) throws {
        let disk = try DiskSpec.parse(spec)
        #expect(disk.target == nil)
        #expect(disk.vdev == "hdc")
        #expect(disk.format == .empty)
        #expect(disk.isCDROM)
        #expect(disk.isReadOnly)
    }

    @Test func backendTypeAndKeywords() throws {
        let disk = try DiskSpec.parse("backendtype=phy,vdev=xvdb,access=w,target=/dev/vg/guest-volume")
        #expect(disk.backendType == .phy)
        #expect(disk.vdev == "xvdb")
        #expect(disk.target == "/dev/vg/guest-volume")
        #expect(disk.deviceNumber == (202 << 8) | (1 << 4))
    }

    @Test(arguments: [
        "iscsi:iqn.2001-05.com.equallogic:0-8a0906-23fe93404-c82797962054a96d-examplehost,xvda,w",
        "vdev=xvda,access=w,script=block-iscsi,target=iqn.2001-05.com.equallogic:0-8a0906-23fe93404-c82797962054a96d-examplehost",
    ])
    func scriptTargets(spec: String) throws {
        let disk = try DiskSpec.parse(spec)
        #expect(disk.target == "iqn.2001-05.com.equallogic:0-8a0906-23fe93404-c82797962054a96d-examplehost")
        #expect(disk.script == "block-iscsi")
        #expect(disk.vdev == "xvda")
        #expect(!disk.isReadOnly)
    }

    @Test func drbdPrefix() throws {
        let disk = try DiskSpec.parse("drbd:app01,hda,w")
        #expect(disk.target == "app01")
        #expect(disk.script == "block-drbd")
        #expect(disk.vdev == "hda")
    }

    @Test func stackedDeprecatedPrefixes() throws {
        let disk = try DiskSpec.parse("tap:aio:qcow2:/images/guest.qcow2,xvda,w")
        #expect(disk.format == .qcow2)
        #expect(disk.target == "/images/guest.qcow2")
        #expect(disk.vdev == "xvda")
        let phy = try DiskSpec.parse("phy:/dev/vg/root,xvda1,w")
        #expect(phy.target == "/dev/vg/root")
        #expect(phy.vdev == "xvda1")
        #expect(phy.backendType == nil)
    }

    @Test func flags() throws {
        let disk = try DiskSpec.parse(
            "discard, trusted, direct-io-safe, specification=virtio, grant_usage=1, backend=driverdom, vdev=hda, "
                + "target=/some/disk/image.raw")
        #expect(disk.discard == true)
        #expect(disk.trusted == true)
        #expect(disk.isDirectIOSafe)
        #expect(disk.specification == .virtio)
        #expect(disk.grantUsage == true)
        #expect(disk.backendDomain == "driverdom")
        let other = try DiskSpec.parse("cdrom,no-discard,untrusted,grant_usage=0,vdev=hda,target=/some/disk/image.iso")
        #expect(other.discard == false)
        #expect(other.trusted == false)
        #expect(other.grantUsage == false)
        #expect(other.isCDROM)
    }

    @Test func coloOptions() throws {
        let disk = try DiskSpec.parse(
            "colo,colo-host=10.0.0.2,colo-port=9000,colo-export=qdisk1,active-disk=/a.qcow2,hidden-disk=/h.qcow2,"
                + "/d.img,qcow2,xvda")
        #expect(disk.colo.isEnabled == true)
        #expect(disk.colo.host == "10.0.0.2")
        #expect(disk.colo.port == 9000)
        #expect(disk.colo.export == "qdisk1")
        #expect(disk.colo.activeDisk == "/a.qcow2")
        #expect(disk.colo.hiddenDisk == "/h.qcow2")
        #expect(disk.format == .qcow2)
    }

    @Test func targetKeywordTakesTheRestIncludingCommas() throws {
        let disk = try DiskSpec.parse("vdev=xvda, target=/srv/odd,name:with=stuff,")
        #expect(disk.target == "/srv/odd,name:with=stuff")
    }

    @Test func emptyTargetThenTargetKeyword() throws {
        let disk = try DiskSpec.parse(",raw,xvda,rw,target=/dev/sdb")
        #expect(disk.target == "/dev/sdb")
    }

    @Test func formatKeywordMakesTheSecondPositionalTheVdev() throws {
        let disk = try DiskSpec.parse("format=qcow2,/images/a.qcow2,xvda,ro")
        #expect(disk.format == .qcow2)
        #expect(disk.vdev == "xvda")
        #expect(disk.isReadOnly)
    }

    @Test func errors() {
        let cases: [(String, String)] = [
            ("foo", "no vdev specified; give the guest's device name, as in vdev=xvda"),
            ("/dev/x,xvda,w", "unknown format \"xvda\"; expected raw, qcow, qcow2, vhd, qed or empty (positional parameters are target,format,vdev,access; \"xvda\" is in the format position)"),
            ("/dev/x,raw,xvda,rw,extra", "too many positional parameters, near \"extra\""),
            ("/dev/x,raw,xvda,rx", "unknown access \"rx\"; expected r, ro, w or rw"),
            ("vdev=xvda,access=rw", "no target specified (and device not removable)"),
            ("vdev=xvda,target=", "no target specified (and device not removable)"),
            ("vdev=xvda,mode=r,target=/x", "unknown parameter `mode=`; xl spells it access=r"),
            ("vdev=xvda,colour=red,target=/x", "unknown parameter `colour=`"),
            ("/a=b,raw,xvda", "bad disk syntax near \"/a=b\"; a target containing `=` or `,` must be given last as target=..."),
            ("vdev=xvda,devtype=floppy,target=/x", "unknown devtype \"floppy\"; expected cdrom or disk"),
            ("backendtype=nbd,vdev=xvda,target=/x", "unknown backendtype \"nbd\"; expected phy, qdisk, standalone or tap"),
            ("specification=scsi,vdev=xvda,target=/x", "unknown specification \"scsi\"; expected xen or virtio"),
            ("grant_usage=2,vdev=xvda,target=/x", "grant_usage must be 0 or 1, got \"2\""),
            ("colo-port=0,vdev=xvda,target=/x", "colo-port must be a port number from 1 to 65535, got \"0\""),
            ("format=raw,format=qcow2,vdev=xvda,target=/x", "format respecified"),
            ("vdev=xvda,vdev=xvdb,target=/x", "vdev respecified, near \"xvdb\""),
            ("/x,raw,xvda,vdev=xvdb", "vdev respecified, near \"xvdb\""),
            ("nfs:/srv/x,xvda,w", "unknown deprecated disk prefix `nfs:`"),
            (",hdc:floppy,r", "unknown deprecated device type `floppy` in \"hdc:floppy\""),
            ("/x,raw,xvd", "invalid vdev \"xvd\"; expected a name like xvda, xvdb2, hdc, sda1 or d0p1 (see xen-vbd-interface(7))"),
            ("/x,raw,hde", "invalid vdev \"hde\"; expected a name like xvda, xvdb2, hdc, sda1 or d0p1 (see xen-vbd-interface(7))"),
            ("/x,raw,xvda01", "invalid vdev \"xvda01\"; expected a name like xvda, xvdb2, hdc, sda1 or d0p1 (see xen-vbd-interface(7))"),
            ("/x,raw,sdq", "invalid vdev \"sdq\"; expected a name like xvda, xvdb2, hdc, sda1 or d0p1 (see xen-vbd-interface(7))"),
            ("/x,raw,/dev/xvda", "invalid vdev \"/dev/xvda\"; expected a name like xvda, xvdb2, hdc, sda1 or d0p1 (see xen-vbd-interface(7))"),
            ("", "no vdev specified; give the guest's device name, as in vdev=xvda"),
        ]
        for (spec, message) in cases {
            #expect(throws: SpecStringError(message), "\(spec)") { try DiskSpec.parse(spec) }
        }
    }

    @Test func deviceNumbersFollowXenVbdInterface() {
        let cases: [(String, Int)] = [
            ("xvda", 202 << 8),
            ("d0p0", 202 << 8),
            ("d0", 202 << 8),
            ("xvdb2", (202 << 8) | (1 << 4) | 2),
            ("d1p2", (202 << 8) | (1 << 4) | 2),
            ("xvdq", (1 << 28) | (16 << 8)),
            ("xvdtq37", (1 << 28) | (536 << 8) | 37),
            ("d536p37", (1 << 28) | (536 << 8) | 37),
            ("xvdaa", (1 << 28) | (26 << 8)),
            ("sdb3", (8 << 8) | (1 << 4) | 3),
            ("hdc2", (22 << 8) | 2),
            ("hdb", (3 << 8) | (1 << 6)),
            ("51712", 51712),
            ("0xca00", 51712),
        ]
        for (vdev, number) in cases {
            #expect(virtualDiskDeviceNumber(vdev) == number, "\(vdev)")
        }
        for vdev in ["xvd", "hd", "xvda0", "xvda256", "hda64", "sda16", "d0p", "dp1", "abc", "-1", "d1048576p0"] {
            #expect(virtualDiskDeviceNumber(vdev) == nil, "\(vdev)")
        }
    }
}
