// Threads for the concurrency tests: workers on Foundation threads, an atomic counter, failures
// collected on the workers and reported by the test's own thread, and a wait with a timeout (a
// deadlock becomes a failed test, not a hung run).

import Foundation
import Synchronization
import Testing

/// An atomic integer shared between threads.
final class SharedInt: Sendable {
    private let value = Atomic<Int>(0)
    func load() -> Int { value.load(ordering: .sequentiallyConsistent) }
    func store(_ v: Int) { value.store(v, ordering: .sequentiallyConsistent) }
    /// Adds `delta` and returns the new value.
    @discardableResult
    func add(_ delta: Int) -> Int { value.add(delta, ordering: .sequentiallyConsistent).newValue }
}

/// Failures seen on worker threads, recorded by the test's own thread afterwards (issues are
/// attributed to the current test through a task-local, which a Foundation thread lacks).
final class Failures: Sendable {
    private let list = Mutex<[String]>([])
    func record(_ message: String) { list.withLock { $0.append(message) } }
    func check(_ condition: Bool, _ message: @autoclosure () -> String) {
        if !condition { record(message()) }
    }
    var all: [String] { list.withLock { $0 } }

    /// Turns what the workers saw into test issues.
    func report(sourceLocation: SourceLocation = #_sourceLocation) {
        for message in all.prefix(20) { Issue.record(Comment(rawValue: message), sourceLocation: sourceLocation) }
        if all.count > 20 { Issue.record("... and \(all.count - 20) more failures", sourceLocation: sourceLocation) }
    }
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
func waitUntil(_ timeout: Duration, _ condition: () -> Bool) -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while !condition() {
        if clock.now >= deadline { return false }
        usleep(100)
    }
    return true
}

/// Runs `body(i)` for `i` in `0 ..< count`, each on its own thread, and waits for all of them;
/// returns `false` if they did not all finish within `timeout` (a deadlock or livelock).
func runThreads(_ count: Int, timeout: Duration = .seconds(20),
                        _ body: @escaping @Sendable (Int) -> Void) -> Bool {
    let finished = SharedInt()
    for i in 0..<count {
        let thread = Thread {
            body(i)
            finished.add(1)
        }
        thread.stackSize = 1 << 20
        thread.start()
    }
    return waitUntil(timeout) { finished.load() == count }
}

