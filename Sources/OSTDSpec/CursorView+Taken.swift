// What one `take_next` removes, as a cursor view sees it (OSTD `PageTableFrag`; vostd's
// `item_into_mapping` for a leaf; check 14 of vostd-spec-reference.md §10 B), and the conversion
// from the core's fragment, so an auditor can compare a real `takeNext` with `takeNextSpec`.

@_spi(OSTDInternals) import OSTDMemory

extension CursorView {
    /// What one `take_next` removed (OSTD `PageTableFrag`, as a view sees it).
    public enum Taken: Equatable, Sendable, CustomStringConvertible {
        /// One leaf (`PageTableFrag::Mapped { va, item }`, as `item_into_mapping(va, item)`).
        case mapped(Mapping)
        /// A whole node covering `va` (`PageTableFrag::StrayPageTable { va, len, num_frames }`),
        /// with `numFrames` leaves in it.
        case strayPageTable(va: Range<Vaddr>, numFrames: Int)

        public var description: String {
            switch self {
            case .mapped(let m): return "mapped \(m)"
            case .strayPageTable(let va, let n): return "stray page table \(va.lowerBound)..<\(va.upperBound), \(n) leaves"
            }
        }
    }
}

extension CursorView.Taken {
    /// What `fragment`, returned by a real `takeNext`, removed. The fragment is left as it was
    /// (taken apart and rebuilt: Swift 6.3 cannot read the payload of a borrowed noncopyable enum
    /// here); drop it only after the TLB flush.
    public init<C: PageTableConfig>(_ fragment: inout PageTableFrag<C>) {
        switch consume fragment {
        case .mapped(let va, let item):
            self = .mapped(Mapping(va: va, item: item.info))
            fragment = .mapped(va: va, item: item)
        case .strayPageTable(let node, let va, let len, let numFrames):
            self = .strayPageTable(va: va..<(va + len), numFrames: numFrames)
            fragment = .strayPageTable(node: node, va: va, len: len, numFrames: numFrames)
        }
    }
}
