// A spin lock over one atomic word, as OSTD's `SpinLock`.
//
// The core imports nothing but the standard library and `Synchronization`, and
// `Synchronization.Mutex` needs an operating system, so kernel-style critical sections use this
// lock. Critical sections in this package are short (a few list operations); waiters spin on a
// plain load before retrying the exchange, so a contended line is not hammered with RMWs.

import Synchronization

/// A test-and-test-and-set spin lock.
@usableFromInline
struct SpinLock: ~Copyable {
    @usableFromInline let word: Atomic<Bool>

    @inlinable
    init() { word = Atomic(false) }

    /// Spins until the lock is taken.
    @inlinable
    func lock() {
        while word.exchange(true, ordering: .acquiring) {
            while word.load(ordering: .relaxed) {}
        }
    }

    /// Releases a lock taken by `lock()`.
    @inlinable
    func unlock() {
        word.store(false, ordering: .releasing)
    }
}

/// A spin lock whose word lives in its own allocation, for locks inside state that other threads
/// read through a pointer: taking it is then an access to the lock word only, not to the whole
/// containing value (Swift's exclusivity model, which ThreadSanitizer checks).
@usableFromInline
struct OutOfLineSpinLock {
    @usableFromInline let word: UnsafeMutablePointer<Atomic<Bool>>

    init() {
        word = .allocate(capacity: 1)
        word.initialize(to: Atomic(false))
    }

    /// Frees the word; the lock must not be used afterwards.
    func deallocate() {
        word.deinitialize(count: 1)
        word.deallocate()
    }

    /// Spins until the lock is taken.
    @inlinable
    func lock() {
        while word.pointee.exchange(true, ordering: .acquiring) {
            while word.pointee.load(ordering: .relaxed) {}
        }
    }

    /// Releases a lock taken by `lock()`.
    @inlinable
    func unlock() {
        word.pointee.store(false, ordering: .releasing)
    }
}
