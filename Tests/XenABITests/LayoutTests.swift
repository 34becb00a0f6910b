// Every WireLayout's offsets and sizes against the same facts computed by a C compiler
// from Xen's public headers (Sources/CXenHeaders, Debian's libxen-dev).

import CXenHeaders
import Testing
import XenABI

/// "struct.field" / "sizeof struct" → value, from `cxen_layout_facts()`; empty when the
/// headers were not installed at build time.
let headerFacts: [String: Int] = {
    var count: UInt = 0
    guard let table = cxen_layout_facts(&count) else { return [:] }
    var facts: [String: Int] = [:]
    for index in 0..<Int(count) {
        facts[String(cString: table[index].name)] = Int(table[index].value)
    }
    return facts
}()

/// The message for an empty fact table.
let headersMissing: Comment = "Xen public headers (libxen-dev) not installed"

/// One Swift wire layout: its name, size and facts.
struct Layout: Sendable, CustomTestStringConvertible {
    let name: String
    let size: Int
    let facts: [Fact]
    struct Fact: Sendable { let name: String; let value: Int }

    init<T: WireLayout>(_ type: T.Type) {
        name = String(describing: type)
        size = type.size
        facts = type.layoutFacts.map { Fact(name: $0.name, value: $0.value) }
    }

    var testDescription: String { name }

    static let all: [Layout] = [
        Layout(StartInfo.self), Layout(SharedInfoLayout.self), Layout(VCPUInfoLayout.self), Layout(VCPUTimeInfo.self),
        Layout(RunstateLayout.self), Layout(ConsoleRingLayout.self), Layout(XenStoreRingLayout.self), Layout(TrapInfo.self),
        Layout(IretContext.self), Layout(MMUUpdate.self), Layout(MMUExtOp.self), Layout(MulticallEntry.self),
        Layout(CallbackRegister.self), Layout(RegisterVCPUInfo.self), Layout(SingleshotTimer.self), Layout(MachphysMapping.self),
        Layout(MemoryMapLayout.self), Layout(MemoryReservation.self), Layout(SchedPoll.self),
    ]
}

/// Records a visible known issue when the headers are missing; returns whether they are there.
func requireHeaders() -> Bool {
    if headerFacts.isEmpty {
        withKnownIssue(headersMissing) { Issue.record("cxen_layout_facts() returned no facts") }
        return false
    }
    return true
}

@Suite("ABI layouts against Xen's public headers")
struct LayoutTests {
    @Test("Every layout fact equals the C compiler's offsetof/sizeof from Xen's headers", arguments: Layout.all)
    func factsMatchHeaders(layout: Layout) {
        guard requireHeaders() else { return }
        #expect(!layout.facts.isEmpty)
        for fact in layout.facts {
            guard let value = headerFacts[fact.name] else {
                Issue.record("\(layout.name): fact \"\(fact.name)\" is missing from cxen_layout_facts()")
                continue
            }
            #expect(fact.value == value, "\(layout.name): \(fact.name)")
        }
    }

    @Test("Each layout's size is one of its own sizeof facts", arguments: Layout.all)
    func sizeIsAFact(layout: Layout) {
        let sizes = layout.facts.filter { $0.name.hasPrefix("sizeof ") }
        #expect(sizes.contains { $0.value == layout.size }, "\(layout.name).size = \(layout.size)")
    }

    @Test("Fact names are unique within each layout and across layouts")
    func uniqueNames() {
        let names = Layout.all.flatMap { $0.facts.map(\.name) }
        #expect(Set(names).count == names.count)
    }

    @Test("The sizes the notes and the hypervisor rely on", arguments: [
        ("sizeof start_info", 0x490), ("sizeof shared_info", 0xc40), ("sizeof vcpu_info", 0x40),
        ("sizeof vcpu_time_info", 0x20), ("sizeof iret_context", 0x48), ("sizeof multicall_entry", 0x40),
        ("sizeof xencons_interface", 0xc10), ("sizeof xenstore_domain_interface", 0x81c),
    ])
    func knownSizes(name: String, value: Int) {
        guard requireHeaders() else { return }
        #expect(headerFacts[name] == value)
    }

    /// Offsets the event-channel, sched_op, xen_version and physdev handlers hardcode
    /// (Sources/Hypervisor/Hypercalls), which have no WireLayout of their own.
    @Test("Offsets hardcoded by hypercall handlers match the headers", arguments: [
        ("sizeof evtchn_alloc_unbound", 8), ("evtchn_alloc_unbound.dom", 0), ("evtchn_alloc_unbound.remote_dom", 2),
        ("evtchn_alloc_unbound.port", 4),
        ("sizeof evtchn_bind_interdomain", 12), ("evtchn_bind_interdomain.remote_dom", 0),
        ("evtchn_bind_interdomain.remote_port", 4), ("evtchn_bind_interdomain.local_port", 8),
        ("sizeof evtchn_bind_virq", 12), ("evtchn_bind_virq.virq", 0), ("evtchn_bind_virq.vcpu", 4), ("evtchn_bind_virq.port", 8),
        ("sizeof evtchn_bind_ipi", 8), ("evtchn_bind_ipi.vcpu", 0), ("evtchn_bind_ipi.port", 4),
        ("sizeof evtchn_close", 4), ("sizeof evtchn_send", 4), ("sizeof evtchn_unmask", 4),
        ("sizeof evtchn_status", 24), ("evtchn_status.dom", 0), ("evtchn_status.port", 4), ("evtchn_status.status", 8),
        ("evtchn_status.vcpu", 12), ("evtchn_status.u.unbound.dom", 16), ("evtchn_status.u.interdomain.dom", 16),
        ("evtchn_status.u.interdomain.port", 20), ("evtchn_status.u.virq", 16),
        ("sizeof evtchn_bind_vcpu", 8), ("evtchn_bind_vcpu.port", 0), ("evtchn_bind_vcpu.vcpu", 4),
        ("sizeof sched_shutdown", 4), ("sizeof physdev_set_iopl", 4),
        ("sizeof xen_feature_info", 8), ("xen_feature_info.submap_idx", 0), ("xen_feature_info.submap", 4),
        ("sizeof xen_platform_parameters", 8), ("sizeof vcpu_register_runstate_memory_area", 8),
        ("sizeof callback_unregister", 4),
    ])
    func handlerOffsets(name: String, value: Int) {
        guard requireHeaders() else { return }
        #expect(headerFacts[name] == value, "\(name)")
    }

    @Test("SharedInfoLayout.vcpuInfo(n) steps by sizeof(vcpu_info)")
    func vcpuInfoSlots() {
        #expect(SharedInfoLayout.vcpuInfo(0) == 0)
        #expect(SharedInfoLayout.vcpuInfo(1) == 0x40)
        #expect(SharedInfoLayout.vcpuInfo(31) == 0x7c0)
        #expect(SharedInfoLayout.vcpuInfo(32) == SharedInfoLayout.evtchnPending, "32 legacy slots fill 0x800 bytes")
        #expect(VCPUInfoLayout.time + VCPUTimeInfo.size == VCPUInfoLayout.size)
    }
}
