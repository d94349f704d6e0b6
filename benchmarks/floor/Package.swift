// swift-tools-version:6.0
// The floor: the least a SwiftNIO server does for Tandem's wire shape (see Sources/nio-floor/main.swift). Not part of
// Tandem and not built by its tests; `benchmarks/scripts/floor.sh` builds it and runs tandem-bench against it.
import PackageDescription

let package = Package(
    name: "nio-floor",
    dependencies: [.package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2")],
    targets: [
        .executableTarget(
            name: "nio-floor",
            dependencies: [.product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio")],
            swiftSettings: [.swiftLanguageMode(.v6)]
        )
    ]
)
