import ArgumentParser
import Foundation
import Toolstack

/// Serialises writes to a file descriptor from several threads.
final class OutputWriter: @unchecked Sendable {
    private let handle: FileHandle
    private let lock = NSLock()
    init(_ handle: FileHandle) { self.handle = handle }
    func write(_ bytes: [UInt8]) {
        lock.lock(); defer { lock.unlock() }
        handle.write(Data(bytes))
    }
    func line(_ text: String) { write(Array((text + "\n").utf8)) }
}

let standardOutput = OutputWriter(FileHandle.standardOutput)
let standardError = OutputWriter(FileHandle.standardError)

struct Domus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "domus",
        abstract: "Domus: a Xen-compatible hypervisor on KVM.",
        discussion: """
            `domus run` boots one guest in the foreground. The other verbs are xl's and talk to \
            the domain daemon, domusd, over its control socket (--socket, $DOMUS_SOCKET, \
            default /run/domus/domusd.sock). DOM is a domain name or id.
            """,
        subcommands: [Run.self, Create.self, List.self, Console.self, Shutdown.self, Reboot.self, Destroy.self,
                      Pause.self, Unpause.self, MemSet.self, MemMax.self, VcpuSet.self, VcpuList.self, Info.self, Dmesg.self,
                      Uptime.self, Domid.self, Domname.self, Rename.self])
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Boot a PV guest kernel in the foreground, with its console on stdout.",
        discussion: """
            Exit status: 0 poweroff, 1 the guest crashed, 2 bad input, 3 reboot, 4 the hypervisor \
            crashed the domain (details on stderr), 5 suspend, 6 watchdog, 7 soft reset, \
            8 destroyed (Ctrl-] on --console), 124 --timeout expired.
            """)

    @Option(help: "The PV kernel: an ELF image with Xen notes, or a bzImage (gzip or XZ).")
    var kernel: String
    @Option(help: "An initial ramdisk.")
    var initrd: String?
    @Option(help: "The kernel command line.")
    var cmdline: String = ""
    @Option(help: "Memory in MiB.")
    var memory: UInt64 = 128
    @Option(help: "Number of vCPUs.")
    var vcpus: Int = 1
    @Option(help: "Destroy the domain and exit 124 if it has not finished after this many seconds.")
    var timeout: Double?
    @Flag(help: "Log hypervisor debug messages to stderr.")
    var verbose = false
    @Flag(help: "Trace every hypercall and exit to stderr.")
    var trace = false
    @Flag(help: "Print hypercall and exit counts when the domain ends.")
    var stats = false
    @Flag(help: "Connect the terminal to the guest console both ways; Ctrl-] detaches and destroys the domain.")
    var console = false
    @Flag(help: "Handle every hypercall in the host, without the in-VM ring-0 core (for comparison and debugging).")
    var noRing0Core = false
    @Flag(inversion: .prefixedNo, help: "Run the guest's timer on each vCPU's local APIC inside the VM, where KVM has one, or on the host's timers (default: the local APIC for a one-vCPU domain; see docs/amdv-box.md).")
    var apicTimer: Bool?
    @Flag(help: "Decompress the kernel even if a decompressed copy of the same image is cached ($DOMUS_KERNEL_CACHE, else ~/.cache/domus/kernels).")
    var noKernelCache = false
    @Option(help: ArgumentHelp("Sample where each vCPU is every millisecond and write the samples to this file when the domain ends (symbolise the RIPs with the guest's System.map).", valueName: "file"))
    var sampleGuest: String?

    func run() throws {
        var spec = DomainSpec(kernelPath: kernel, initrdPath: initrd, commandLine: cmdline, memoryMiB: memory, vcpus: vcpus)
        spec.ring0Core = !noRing0Core
        spec.apicTimer = apicTimer
        spec.kernelCache = !noKernelCache
        var options = OneShotRun.Options(spec: spec)
        options.verbose = verbose
        options.trace = trace
        options.timeoutSeconds = timeout
        options.statistics = stats
        options.interactive = console
        options.sampleFile = sampleGuest
        let outcome = OneShotRun.run(options, output: { standardOutput.write($0) }, diagnostics: { standardError.line($0) })
        throw ExitCode(outcome.status.rawValue)
    }
}

/// xl takes global options before the verb (`xl -v list`); `domus --socket PATH list`
/// is moved to `domus list --socket PATH`, where the verb's options are parsed.
func normalizedArguments(_ arguments: [String]) -> [String] {
    var options: [String] = []
    var rest = arguments[...]
    while let first = rest.first, first.hasPrefix("--socket") {
        if first == "--socket", rest.count >= 2 {
            options += rest.prefix(2)
            rest = rest.dropFirst(2)
        } else if first.hasPrefix("--socket=") {
            options.append(first)
            rest = rest.dropFirst()
        } else {
            break
        }
    }
    guard !options.isEmpty, let verb = rest.first else { return arguments }
    return [verb] + options + rest.dropFirst()
}

signal(SIGPIPE, SIG_IGN)
do {
    var command = try Domus.parseAsRoot(normalizedArguments(Array(CommandLine.arguments.dropFirst())))
    try command.run()
} catch let code as ExitCode {
    exit(code.rawValue)
} catch let failure as CommandFailure {
    standardError.line("domus: " + failure.message)
    exit(failure.status)
} catch {
    let status = Domus.exitCode(for: error)
    if status == .success {
        standardOutput.line(Domus.fullMessage(for: error))
        exit(0)
    }
    standardError.line("domus: " + Domus.message(for: error))
    exit(2)
}
