// swift-tools-version: 6.1
// userswitch: a userspace Ethernet switch for Linux virtualisation hosts.
// SwitchCore and SwitchControl need no root and no network to test (SwitchCore's only C is
// CPrefetch, a header with the prefetch hint Swift lacks); only SwitchIO and the executables touch
// the kernel through the C shim modules.
import PackageDescription

let package = Package(
    name: "userswitch",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "SwitchCore", targets: ["SwitchCore"]),
        .library(name: "SwitchIO", targets: ["SwitchIO"]),
        .library(name: "SwitchRouting", targets: ["SwitchRouting"]),
        .library(name: "SwitchControl", targets: ["SwitchControl"]),
        // Test support (in-memory ports) for Tests and Benchmarks; the daemon does not link it.
        .library(name: "SwitchTesting", targets: ["SwitchTesting"]),
        .executable(name: "userswitchd", targets: ["userswitchd"]),
        .executable(name: "userswitchctl", targets: ["userswitchctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        .target(name: "CLinuxNet"),
        .systemLibrary(name: "CURing", pkgConfig: "liburing", providers: [.apt(["liburing-dev"])]),
        .systemLibrary(name: "CPcap", pkgConfig: "libpcap", providers: [.apt(["libpcap-dev"])]),
        .target(name: "CPrefetch"),
        .target(name: "SwitchCore", dependencies: ["CPrefetch"]),
        .target(name: "SwitchIO", dependencies: ["SwitchCore", "CLinuxNet", "CURing", "CPcap"]),
        // The router (routed and NAT modes): pure Swift like SwitchCore, tested the same way.
        .target(name: "SwitchRouting", dependencies: ["SwitchCore"]),
        .target(name: "SwitchControl", dependencies: ["SwitchCore"]),
        .target(name: "SwitchTesting", dependencies: ["SwitchCore"]),
        .executableTarget(
            name: "userswitchd",
            dependencies: [
                "SwitchCore", "SwitchIO", "SwitchRouting", "SwitchControl", "CLinuxNet",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "userswitchctl",
            dependencies: [
                "SwitchControl", "SwitchCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "SwitchCoreTests", dependencies: ["SwitchCore", "SwitchTesting"]),
        .testTarget(name: "SwitchIOTests", dependencies: ["SwitchIO", "SwitchCore", "SwitchTesting"]),
        .testTarget(name: "SwitchRoutingTests", dependencies: ["SwitchRouting", "SwitchCore", "SwitchTesting", "SwitchIO"]),
        .testTarget(name: "SwitchControlTests", dependencies: ["SwitchControl", "SwitchCore"]),
        .testTarget(name: "IntegrationTests", dependencies: ["SwitchCore", "SwitchControl"]),
    ],
    swiftLanguageModes: [.v6]
)
