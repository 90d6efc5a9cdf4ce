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
///
/// `@safe`: the word is allocated by `init` and freed only by the `@unsafe` `deallocate()`, which
/// the lock's owner calls when it is destroyed (the machine's state, a CPU record, the grace-period
/// list); until then every copy of the handle points at the live word, used only atomically.
@safe @usableFromInline
struct OutOfLineSpinLock {
    @usableFromInline let word: UnsafeMutablePointer<Atomic<Bool>>

    init() {
        // SAFETY: a fresh allocation of one word, initialised once.
        unsafe word = .allocate(capacity: 1)
        unsafe word.initialize(to: Atomic(false))
    }

    /// Frees the word; the lock must not be used afterwards.
    ///
    /// - Safety: called once, by the lock's owner as it is destroyed, after the last use of any
    ///   copy of the handle.
    @unsafe
    func deallocate() {
        // SAFETY: the word `init` allocated and initialised; the caller's contract makes this its
        // last use.
        unsafe word.deinitialize(count: 1)
        unsafe word.deallocate()
    }

    /// Spins until the lock is taken.
    @inlinable
    func lock() {
        // SAFETY: the word is live until the owner's `deallocate()` (see the type), and is only
        // accessed atomically.
        while unsafe word.pointee.exchange(true, ordering: .acquiring) {
            while unsafe word.pointee.load(ordering: .relaxed) {}
        }
    }

    /// Releases a lock taken by `lock()`.
    @inlinable
    func unlock() {
        // SAFETY: as in `lock()`.
        unsafe word.pointee.store(false, ordering: .releasing)
    }
}
