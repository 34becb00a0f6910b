// swift-tools-version: 6.0
// Domus: a Xen-compatible hypervisor on KVM. Targets are layers; see ARCHITECTURE.md.
import PackageDescription

let package = Package(
    name: "Domus",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "domus", targets: ["domus"]),
        .executable(name: "domus-bench", targets: ["domus-bench"]),
        .executable(name: "domusd", targets: ["domusd"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // C shims, and the XZ decoder in CCompression. CKVM wraps <linux/kvm.h> and ioctl.
        .target(name: "CKVM"),
        // zlib and liblzma, and Domus's one-shot XZ decoder (domus_xz.c), for bzImage payloads.
        .target(name: "CCompression", linkerSettings: [.linkedLibrary("z"), .linkedLibrary("lzma")]),
        // Xen's public headers (Debian libxen-dev), used only by tests to check ABI offsets.
        .target(name: "CXenHeaders"),
        // Atomic read-modify-write on guest memory (event bitmaps, ring indices).
        .target(name: "CGuestAtomics"),

        // Layers, bottom up.
        .target(name: "GuestMemory", dependencies: ["CGuestAtomics"]),
        .target(name: "XenABI"),
        .target(name: "KVM", dependencies: ["CKVM"]),
        .target(name: "XenStore"),
        // Kernel images: ELF64, Xen notes, bzImage with gzip/XZ payloads. Pure apart from zlib/liblzma.
        .target(name: "ImageLoader", dependencies: ["CCompression"]),
        // xl.cfg files: xl's syntax and the domain configuration they describe. Pure.
        .target(name: "XLConfig"),
        // The in-VM ring-0 core: the hottest hypercalls, completed without leaving the VM.
        // Built for the host (its layout is shared; its logic is unit-tested) and, with
        // Embedded Swift, for the VM (scripts/build-ring0-core → Machine/Ring0CoreImage.swift).
        .target(name: "Ring0Core", dependencies: ["CGuestAtomics"]),
        .target(name: "Hypervisor", dependencies: ["XenABI", "GuestMemory", "Ring0Core"]),
        .target(name: "Backends", dependencies: ["Hypervisor", "XenABI", "GuestMemory", "XenStore"]),
        .target(name: "Machine", dependencies: ["KVM", "Hypervisor", "Backends", "XenABI", "GuestMemory", "Ring0Core"]),
        .target(name: "Toolstack", dependencies: ["Machine", "ImageLoader", "XLConfig", "Hypervisor", "Backends", "XenStore", "XenABI", "GuestMemory"]),
        .executableTarget(name: "domus", dependencies: [
            "Toolstack", "XLConfig",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // The domain daemon: owns every domain, serves the control socket.
        .executableTarget(name: "domusd", dependencies: [
            "Toolstack",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        .executableTarget(name: "domus-bench", dependencies: ["Toolstack", "KVM", "GuestMemory", "Backends", "Hypervisor", "XenStore"]),

        .testTarget(name: "XenABITests", dependencies: ["XenABI", "CXenHeaders"]),
        .testTarget(name: "HypervisorTests", dependencies: ["Hypervisor", "XenABI", "GuestMemory", "Ring0Core"]),
        .testTarget(name: "XenStoreTests", dependencies: ["XenStore"]),
        .testTarget(name: "ToolstackTests", dependencies: ["Toolstack", "XenABI", "GuestMemory"]),
        .testTarget(name: "BackendsTests", dependencies: ["Backends", "Hypervisor", "XenStore", "XenABI", "GuestMemory"]),
        .testTarget(name: "ImageLoaderTests", dependencies: ["ImageLoader", "CCompression"]),
        .testTarget(name: "XLConfigTests", dependencies: ["XLConfig"]),
        .testTarget(name: "MachineTests", dependencies: ["Machine", "Toolstack", "KVM", "XenABI", "Hypervisor", "Ring0Core"]),
    ]
)
