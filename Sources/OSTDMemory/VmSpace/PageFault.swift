// Demand paging: what a space's page-fault handler is told and may answer.

/// Called when a user-space access through a reader or writer of `space` faults. Return `true`
/// after making the access possible (for example by mapping a frame: demand paging); the access
/// is then retried once. Return `false` to let the access fail with `pageFault`.
public typealias PageFaultHandler = (_ space: VmSpace, _ fault: PageFaultInfo) -> Bool

/// What a page-fault handler is told.
public struct PageFaultInfo: Equatable, Sendable {
    /// The first byte that could not be accessed.
    public var address: Vaddr
    /// Whether the access was a write.
    public var isWrite: Bool
    /// The CPU the access ran on.
    public var cpu: Int

    @inlinable
    public init(address: Vaddr, isWrite: Bool, cpu: Int) {
        self.address = address
        self.isWrite = isWrite
        self.cpu = cpu
    }
}
