// swift-tools-version: 6.2
//
// swift-ostd: the memory-management core of Asterinas OSTD, in Swift.
//
// Layers, bottom to top:
//   OSTDMemory       the core: frames, metadata, allocator, page tables, TLB flushes, address
//                    spaces, I/O. Standard library and Synchronization only, so it also builds
//                    as Embedded Swift. Layers inside it depend one way (.ci/layers-check).
//   OSTDSpec         the executable specification: the seeds' models and predicates, computed
//                    from a live machine through the core's read-only SPI. The core never
//                    imports it.
//   COSTDHostShims   a few lines of C the host layer needs (a thread-local word).
//   OSTDHost         the host boundary: mmap-backed physical memory, threads bound to
//                    simulated CPUs, a monotonic clock.
//   OSTDScript       the op-script language of `ostd-mm run` (../docs/scripts.md): parser,
//                    runner, JSON and text output, page-table image, dumps and drawings.
//   COSTDKVM         the KVM ioctls in C (ioctl is variadic); Linux only.
//   OSTDKVM          a minimal KVM VMM and the hardware check: a space's tables walked by KVM's
//                    x86 page walker, compared with the core's MMU rule (docs/hwcheck.md).
//   ostd-mm          the command-line tool.
//   ostd-fuzz        the libFuzzer target: decoded op sequences run with the audit on.
import PackageDescription

let package = Package(
    name: "swift-ostd",
    products: [
        .library(name: "OSTDMemory", targets: ["OSTDMemory"]),
        .library(name: "OSTDSpec", targets: ["OSTDSpec"]),
        .library(name: "OSTDHost", targets: ["OSTDHost"]),
        .executable(name: "ostd-mm", targets: ["ostd-mm"]),
        .executable(name: "ostd-fuzz", targets: ["ostd-fuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
    ],
    targets: [
        // Strict memory safety (SE-0458): every unsafe use in the core is marked and says why it is sound.
        .target(name: "OSTDMemory", swiftSettings: [.strictMemorySafety()]),
        .target(name: "OSTDSpec", dependencies: ["OSTDMemory"]),
        .target(name: "COSTDHostShims"),
        .target(name: "OSTDHost", dependencies: ["OSTDMemory", "COSTDHostShims"]),
        .target(name: "OSTDScript", dependencies: ["OSTDMemory", "OSTDSpec", "OSTDHost"]),
        // The KVM virtual machine and the hardware check (Linux only; the core never imports it).
        .target(name: "COSTDKVM"),
        .target(name: "OSTDKVM", dependencies: ["OSTDMemory", "COSTDKVM"]),
        .executableTarget(
            name: "ostd-mm",
            dependencies: [
                "OSTDMemory", "OSTDSpec", "OSTDHost", "OSTDScript", "OSTDKVM",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The libFuzzer target (.ci/fuzz); a plain build gets its smoke mode (`--smoke N`).
        .executableTarget(name: "ostd-fuzz", dependencies: ["OSTDScript", "OSTDSpec", "OSTDMemory", "OSTDHost"]),
        .testTarget(
            name: "OSTDMemoryTests",
            dependencies: [
                "OSTDMemory", "OSTDSpec", "OSTDHost", "OSTDScript", "OSTDKVM",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
