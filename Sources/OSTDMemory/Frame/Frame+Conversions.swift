// Checked conversions from type-erased handles back to typed ones (OSTD's `TryFrom` impls).
//
// A failed conversion must not lose the reference, so, as OSTD returns `Err(frame)`, the result
// carries either the converted handle or the original one.

/// The outcome of a checked handle conversion: the converted handle, or the original one back.
@frozen
public enum FrameConversion<Converted: ~Copyable, Original: ~Copyable>: ~Copyable {
    case converted(Converted)
    case rejected(Original)
}

extension FrameConversion: Copyable where Converted: Copyable, Original: Copyable {}

extension FrameConversion where Converted: ~Copyable, Original: ~Copyable {
    /// The converted handle, or `nil` after dropping the original.
    public consuming func get() -> Converted? {
        switch consume self {
        case .converted(let value): return value
        case .rejected: return nil
        }
    }
}

extension Frame where M: FrameMeta {
    /// Recovers the typed handle from an erased one if the slot holds an `M`
    /// (OSTD `TryFrom<Frame<dyn AnyFrameMeta>> for Frame<M>`).
    public static func tryFrom(_ frame: consuming AnyFrame) -> FrameConversion<Frame<M>, AnyFrame> {
        guard frame.typeTag == M.typeTag else { return .rejected(frame) }
        let (slot, context) = frame.intoParts()
        return .converted(Frame(adopting: slot, context: context))
    }
}

extension Frame where M == DynUFrameMeta {
    /// Recovers an untyped handle from an erased one if the frame is untyped
    /// (OSTD `TryFrom<Frame<dyn AnyFrameMeta>> for UFrame`).
    public static func tryFrom(_ frame: consuming AnyFrame) -> FrameConversion<UFrame, AnyFrame> {
        guard frame.isUntyped else { return .rejected(frame) }
        let (slot, context) = frame.intoParts()
        return .converted(UFrame(adopting: slot, context: context))
    }
}
