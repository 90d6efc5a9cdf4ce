// The VMM's errors: what failed, with the errno or the exit that explains it.

#if os(Linux)
import Glibc

/// Why the VMM could not do what it was asked.
public enum KvmError: Error, Equatable, CustomStringConvertible {
    /// `/dev/kvm` cannot be used here (missing, no permission, wrong API version).
    case unavailable(String)
    /// An ioctl or system call failed with `errno`.
    case call(String, errno: Int32)
    /// The guest did something the caller did not expect (an exit, a state).
    case guest(String)

    /// The error for a negative return value `result` (a negated errno) of `call`.
    static func check(_ result: some SignedInteger, _ call: String) throws(KvmError) {
        if result < 0 { throw .call(call, errno: Int32(truncatingIfNeeded: -Int64(result))) }
    }

    public var description: String {
        switch self {
        case .unavailable(let reason): reason
        case .call(let call, let errno): "\(call) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        case .guest(let what): what
        }
    }
}
#endif
