// Every key xl itself reads (tools/xl/xl_parse.c, `parse_config_data`), so Domus can tell a
// typo from an xl feature it does not implement.

/// What Domus does with a key xl knows.
enum KnownKeyRole {
    /// Read into `DomainConfiguration`.
    case modelled
    /// A device or resource the guest would see; Domus cannot provide it, so it is listed
    /// by `DomainConfiguration.unsupportedFeatures()` with this description.
    case device(String)
    /// Accepted and ignored with a warning.
    case ignored
}

enum KnownKeys {
    /// Keys `DomainConfiguration` reads.
    static let modelled: Set<String> = [
        "name", "type", "builder", "uuid",
        "memory", "maxmem", "vcpus", "maxvcpus", "cpus", "cpus_soft", "cpu_weight", "cap",
        "kernel", "ramdisk", "cmdline", "root", "extra", "bootloader", "firmware",
        "on_poweroff", "on_reboot", "on_watchdog", "on_crash", "on_soft_reset",
        "disk", "vif",
    ]

    /// Keys that give the guest devices or host resources (xl.cfg(5), Devices and the
    /// passthrough options), with what they are.
    static let devices: [String: String] = [
        "pci": "PCI passthrough",
        "dtdev": "device tree passthrough",
        "iomem": "I/O memory passthrough",
        "ioports": "I/O port passthrough",
        "irqs": "interrupt passthrough",
        "vfb": "virtual framebuffers",
        "vkb": "virtual keyboards",
        "vtpm": "virtual TPMs",
        "p9": "9pfs shares",
        "pvcalls": "PV calls",
        "channel": "PV channels",
        "usbctrl": "USB controllers",
        "usbdev": "USB devices",
        "vdispl": "virtual displays",
        "vsnd": "virtual sound cards",
        "virtio": "virtio devices",
        "vnuma": "virtual NUMA topology",
    ]

    /// The remaining keys xl reads; Domus ignores them with a warning.
    static let ignored: Set<String> = [
        "acpi", "acpi_firmware", "acpi_laptop_slate", "acpi_s3", "acpi_s4", "altp2m", "altp2m_count",
        "altp2mhvm", "apic", "arm_sci", "bios", "bios_path_override", "boot", "bootloader_args",
        "bootloader_restrict", "bootloader_user", "cpuid", "device_model", "device_model_args",
        "device_model_override", "device_model_stubdomain_override", "device_model_stubdomain_seclabel",
        "device_model_user", "device_model_version", "device_tree", "display", "dm_restrict",
        "driver_domain", "e820_host", "extratime", "firmware_override", "gfx_passthru", "gic_version",
        "hap", "hdtype", "hpet", "hvm_pirq", "init_seclabel", "keymap", "latency", "llc_colors",
        "localtime", "max_event_channels", "max_grant_frames", "max_grant_version", "max_maptrack_frames",
        "mca_caps", "mmio_hole", "ms_vm_genid", "msr_relaxed", "nestedhvm", "nographic", "nomigrate",
        "nr_spis", "nx", "oos", "opengl", "pae", "passthrough", "pci_msitranslate", "pci_permissive",
        "pci_power_mgmt", "pci_seize", "period", "pool", "pvshim", "pvshim_cmdline", "pvshim_extra",
        "pvshim_path", "rdm", "rdm_mem_boundary", "rtc_timeoffset", "sdl", "seclabel", "serial",
        "shadow_memory", "slice", "smbios", "smbios_firmware", "soundhw", "spice",
        "spice_clipboard_sharing", "spice_image_compression", "spice_streaming_video",
        "spiceagent_mouse", "spicedisable_ticketing", "spicehost", "spicepasswd", "spiceport",
        "spicetls_port", "spiceusbredirection", "spicevdagent", "stdvga", "stubdomain_cmdline",
        "stubdomain_kernel", "stubdomain_memory", "stubdomain_ramdisk", "sve", "tee", "timer_mode",
        "trap_unmapped_accesses", "tsc_mode", "usb", "usbdevice", "usbversion", "vendor_device", "vga",
        "videoram", "vif2", "viridian", "vkb_device", "vmtrace_buf_kb", "vnc", "vncdisplay",
        "vnclisten", "vncpasswd", "vncunused", "vncviewer", "vpmu", "vpt_align", "vuart", "xauthority",
        "xen_platform_pci", "xen_platform_pci_bar_uc", "xend_suspend_evtchn_compat",
        "xenstore_feature_mask", "xenstore_quota",
    ]

    static func role(of key: String) -> KnownKeyRole? {
        if modelled.contains(key) { return .modelled }
        if let device = devices[key] { return .device(device) }
        if ignored.contains(key) { return .ignored }
        return nil
    }

    /// The known key closest to a misspelt one: the same key in lower case, or one within
    /// one edit (two for keys of six characters or more).
    static func suggestion(for key: String) -> String? {
        let candidates = modelled.union(devices.keys).union(ignored)
        let lowered = key.lowercased()
        if candidates.contains(lowered) { return lowered }
        guard lowered.count >= 3 else { return nil }
        let limit = lowered.count >= 6 ? 2 : 1
        var best: (key: String, distance: Int)?
        for candidate in candidates.sorted() {
            let distance = editDistance(lowered, candidate)
            if distance <= limit, distance < (best?.distance ?? Int.max) {
                best = (candidate, distance)
            }
        }
        return best?.key
    }
}

/// Levenshtein distance between two strings, by characters.
private func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a)
    let b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    var current = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        current[0] = i
        for j in 1...b.count {
            let substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
            current[j] = min(previous[j] + 1, current[j - 1] + 1, substitution)
        }
        swap(&previous, &current)
    }
    return previous[b.count]
}
