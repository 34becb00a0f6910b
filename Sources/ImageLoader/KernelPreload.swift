// ImageLoader layer: a kernel loading on its own thread while the caller does the rest.

import Foundation
import Synchronization

/// A kernel image read, decompressed and checked on a background thread.
///
/// Decompressing Debian's XZ kernel is most of a domain build (~0.5 s natively, ~3.5 s
/// in the emulated AMD-V box), and nothing before it needs the kernel: the KVM probe,
/// the initrd, the guest's memory. Starting the load first lets those run beside it
/// on another CPU; `wait()` then returns what `KernelImage.load(path:options:)` would.
public final class KernelPreload: Sendable {
    public let path: String
    public let options: ImageLoadOptions
    /// The load's result and how long it took, once it has finished.
    private let outcome = Mutex<(result: Result<LoadedKernel, ImageError>, duration: Duration)?>(nil)
    private let finished = DispatchGroup()

    /// Starts loading `path` at once.
    public init(path: String, options: ImageLoadOptions) {
        self.path = path
        self.options = options
        finished.enter()
        let startedAt = ContinuousClock.now
        Thread.detachNewThread { [self] in
            let result = Result { () throws(ImageError) -> LoadedKernel in
                try KernelImage.load(path: path, options: options)
            }
            outcome.withLock { $0 = (result, ContinuousClock.now - startedAt) }
            finished.leave()
        }
    }

    /// The loaded kernel, or the error `KernelImage.load(path:options:)` would throw;
    /// waits for the load to finish.
    public func wait() throws(ImageError) -> LoadedKernel {
        finished.wait()
        guard let result = outcome.withLock({ $0?.result }) else {
            // Unreachable: the loading thread stores a result before it leaves the group.
            throw .unreadable(path: path, reason: "the background load ended without a result")
        }
        return try result.get()
    }

    /// How long the load itself took, once it has finished.
    public var loadTime: Duration? { outcome.withLock { $0?.duration } }
}
