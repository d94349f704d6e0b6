// swift-tools-version: 6.1
import PackageDescription

// Dependencies are kept lean on purpose: every package here is rebuilt from scratch by CI.
let package = Package(
    name: "tandem",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "tandem", targets: ["App"]),
        .executable(name: "tandem-bench", targets: ["Bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        // HMAC-SHA256 for the QR codes' pairing tokens (no hand-written cryptography).
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        // Heap: the operators' pairing tally finds what expired without scanning every pairing.
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.1.0"),
        // Tests only: property-based checks of every integer that comes from outside.
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
    ],
    targets: [
        // Debian's libqrencode (apt: libqrencode-dev), which makes the QR codes the PC page shows.
        .systemLibrary(
            name: "CQRencode",
            pkgConfig: "libqrencode",
            providers: [.apt(["libqrencode-dev"])]
        ),
        // JSON values, their strict parser and compact writer, and a flat-object reader: one JSON for every module.
        .target(
            name: "JSON",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strictSettings
        ),
        // Work run on an event loop in the order it was submitted from any thread (HTTP's event streams, Redis commands).
        .target(
            name: "LoopOrder",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strictSettings
        ),
        // HTTP/1.1 over SwiftNIO: requests, responses, SSE framing, static files. Knows nothing of sessions.
        .target(
            name: "HTTP",
            dependencies: [
                "JSON",
                "LoopOrder",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        // hiredis from Debian's libhiredis-dev (installed by scripts/*.sh): its RESP reader and command formatter,
        // nothing that blocks. Its headers are in /usr/include, so no pkg-config flags are needed.
        .systemLibrary(name: "CHiredis", path: "Sources/CHiredis"),
        // Sessions and their events, stored and carried between nodes. Knows nothing of HTTP.
        .target(
            name: "Broker",
            dependencies: [
                "CHiredis",
                "JSON",
                "LoopOrder",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        // The `tandem` executable: configuration, the session registry and the seed's endpoints.
        .executableTarget(
            name: "App",
            dependencies: [
                "HTTP",
                "JSON",
                "Broker",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HeapModule", package: "swift-collections"),
                "CQRencode",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSettings
        ),
        // The benchmark client: starts Tandem (and redis-server, nginx + nchan), drives it from NIO channels, reports
        // JSON lines. Speaks HTTP itself, so it depends on no Tandem module. See BENCHMARKS.md.
        .executableTarget(
            name: "Bench",
            dependencies: [
                "HTTP",  // its byte-level ASCII helpers
                "JSON",  // its JSON writer
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSettings
        ),
        // A small client over real sockets for the integration tests: raw bytes, HTTP requests, SSE streams.
        .target(
            name: "TestSupport",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Tests/TestSupport",
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "HTTPTests",
            dependencies: [
                "HTTP", "JSON", "TestSupport", .product(name: "NIOPosix", package: "swift-nio"),
                // NIO's own HTTP/1 decoder (llhttp), which the hand parser is checked against.
                .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "LoopOrderTests",
            dependencies: ["LoopOrder", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio")],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "BrokerTests",
            dependencies: [
                "Broker", "CHiredis", "JSON", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "AppTests",
            dependencies: [
                "App", "HTTP", "Broker", "JSON", "TestSupport", .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: strictSettings
        ),
        // tandem-bench's command line, its JSON lines and its charts, in process; and its smoke run's stdout and stderr.
        .testTarget(
            name: "BenchTests",
            dependencies: [
                "Bench", "HTTP", "JSON",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: strictSettings
        ),
    ],
    swiftLanguageModes: [.v6]
)

/// `NonisolatedNonsendingByDefault`: a nonisolated async function runs on its caller's executor (the request's task
/// on its connection's loop) instead of hopping to the generic executor on entry: about 100 fewer executor switches
/// per handoff, each of which read the task's executor preference under a lock (BENCHMARKS.md). Work that must
/// leave the caller's executor says so with `@concurrent`.
var strictSettings: [SwiftSetting] {
    [
        .enableUpcomingFeature("ExistentialAny"),
        .enableUpcomingFeature("MemberImportVisibility"),
        .enableUpcomingFeature("NonisolatedNonsendingByDefault"),
    ]
}
