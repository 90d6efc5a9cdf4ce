// Demand paging: what a space's page-fault handler is told and may answer.

/// Called when a user-space access through a reader or writer of `space` faults. Return `true`
/// after making the access possible (for example by mapping a frame: demand paging); the access
/// is then retried once. Return `false` to let the access fail with `pageFault`. Faults of
/// different CPUs may call it at the same time, hence `@Sendable`. It runs inside a read-side
/// section of the faulting CPU (`VmSpace.pageFaultHandler`), so it must not wait for a grace
/// period: setting a space's handler from inside it panics.
public typealias PageFaultHandler = @Sendable (_ space: VmSpace, _ fault: PageFaultInfo) -> Bool

/// What a page-fault handler is told.
public struct PageFaultInfo: Equatable, Sendable {
    /// The first byte that could not be accessed.
    public var address: Vaddr
    /// Whether the access was a write.
    public var isWrite: Bool
    /// The CPU the access ran on.
    public var cpu: Int
    /// The error code the CPU pushed (`X86Mmu`'s rule): P clear for a page not present, P for a
    /// protection violation, P and RSVD for a reserved bit; W/R and U/S describe the access.
    public var errorCode: PageFaultErrorCode

    /// A fault; without `errorCode`, that of a user-mode access to a page not present (`U`, and
    /// `W` for a write: the usual demand-paging fault).
    @inlinable
    public init(address: Vaddr, isWrite: Bool, cpu: Int, errorCode: PageFaultErrorCode? = nil) {
        self.address = address
        self.isWrite = isWrite
        self.cpu = cpu
        self.errorCode = errorCode ?? (isWrite ? [.user, .write] : .user)
    }
}
