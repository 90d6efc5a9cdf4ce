// `PageTableNode<C>`: an owned, detached subtree, as OSTD's `PageTableNode` carried by a
// `StrayPageTable` fragment. Dropping it tears the subtree down (`PageTableNode+Teardown.swift`).

/// An owned, detached subtree (OSTD `PageTableNode<C>` as carried by `StrayPageTable`). Dropping
/// it drops every node and every item in it: tracked frames lose the references their leaves
/// held (OSTD's `PageTablePageMeta::on_drop`).
@frozen
public struct PageTableNode<C: PageTableConfig>: ~Copyable {
    @usableFromInline let node: NodeRef
    @usableFromInline let context: MachineRef

    @inlinable
    init(adopting node: NodeRef, context: MachineRef) {
        self.node = node
        self.context = context
    }

    deinit { context.tearDown(C.self, node, detached: true) }

    /// The node's physical address.
    public var paddr: Paddr { node.paddr(context) }
    /// The node's level.
    public var level: PagingLevel { node.level }
    /// The number of present entries.
    public var nrChildren: Int { node.nrChildren }
    /// Whether the node has been detached from a page table.
    public var isStray: Bool { node.isStray }

    /// Forgets the handle without dropping the subtree and returns the node's address; the
    /// caller tears it down later (`MachineContext.tearDown`).
    consuming func intoRaw() -> Paddr {
        let paddr = node.paddr(context)
        discard self
        return paddr
    }

    /// The 4 KiB pages that tracked leaves of this subtree map (frames a leaf of 2 MiB counts 512).
    public var trackedBasePages: Int { context.trackedBasePages(C.self, node, level: node.level) }
}
