// swift-tools-version: 6.1
// userswitch benchmarks: a package of its own so that the main package never depends on the
// benchmark harness. Run with `swift package benchmark` from this directory (the harness's plugin
// builds and runs every target under Benchmarks/ that depends on `Benchmark`).
// The MallocInterposer trait lets the harness count mallocs: the steady-state forwarding figure
// must be 0 (docs/architecture.md, "The dataplane").
import PackageDescription

let package = Package(
    name: "userswitch-benchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        // Named explicitly: a path dependency is otherwise identified by its directory name, which
        // differs between checkouts.
        .package(name: "userswitch", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.0", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "SwitchCoreBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "SwitchCore", package: "userswitch"),
                .product(name: "SwitchTesting", package: "userswitch"),
                .product(name: "SwitchRouting", package: "userswitch"),
            ],
            path: "Benchmarks/SwitchCoreBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
