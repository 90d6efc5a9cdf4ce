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
