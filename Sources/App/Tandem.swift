#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import ServiceLifecycle

/// `tandem [--config PATH]`: serves Tandem with the configuration from the environment, `config.json` and defaults.
@main
enum Tandem {
    static let usage = """
        Usage: tandem [--config PATH]

        Serves Tandem: the PC and phone pages from Public/ and the SSE handoff API.
        Settings come from environment variables, then config.json (or PATH, or $TANDEM_CONFIG), then defaults;
        see README.md for every key. With no settings it serves the in-memory broker on port 8080.
        """

    static func main() async {
        var arguments = CommandLine.arguments.dropFirst()
        var configPath: String?
        while let argument = arguments.popFirst() {
            switch argument {
            case "-h", "--help":
                print(usage)
                return
            case "--config":
                guard let path = arguments.popFirst() else { fail("--config needs a path") }
                configPath = path
            default:
                fail("unknown argument '\(argument)'\n\n\(usage)")
            }
        }

        let configuration: TandemConfiguration
        do {
            configuration = try TandemConfiguration.load(path: configPath, environment: ProcessInfo.processInfo.environment)
        } catch {
            fail("configuration error: \(error)")
        }
        LoggingSystem.bootstrap { label in
            switch configuration.logFormat {
            case .text:
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = configuration.logLevel
                return handler
            case .json:
                var handler = JSONLogHandler(label: label)
                handler.logLevel = configuration.logLevel
                return handler
            }
        }
        let logger = Logger(label: "tandem")

        do {
            let application = try TandemApplication(configuration: configuration, logger: logger) { address in
                let port = address.port ?? configuration.port
                logger.notice(
                    "Tandem listening on \(configuration.host):\(port) (broker: \(configuration.broker.rawValue), session TTL \(configuration.sessionTTLSeconds) s)"
                )
                let pcPage = PublicOrigin.resolve(configuration, port: port) + "/"
                logger.notice("PC page: \(pcPage)")
                printPCPage(at: pcPage)
            }
            try await application.makeServiceGroup().run()
            logger.notice("Tandem stopped")
        } catch let error as ConfigurationError {
            fail("configuration error: \(error)")
        } catch {
            logger.critical("Tandem failed: \(error)")
            exit(1)
        }
    }

    /// Prints the PC page's URL and a QR code of it on standard output, so a person can open it from another
    /// machine or a phone; colours only when standard output is a terminal, so logs stay plain text.
    private static func printPCPage(at url: String) {
        print("Tandem PC page: \(url)")
        if let code = try? QRCode(encoding: url) {
            print(code.terminalText(ansiColors: isatty(1) == 1))
        }
        // A pipe buffers standard output until exit; the URL is wanted now.
        fflush(nil)  // every stream, standard output included (naming `stdout` is not concurrency-safe)
    }

    private static func fail(_ message: String) -> Never {
        var standardError = FileOutputStream.standardError
        print("tandem: \(message)", to: &standardError)
        exit(2)
    }
}

/// Lets `print` write to standard error.
struct FileOutputStream: TextOutputStream {
    let descriptor: Int32
    static let standardError = FileOutputStream(descriptor: 2)

    mutating func write(_ string: String) {
        var text = string
        text.withUTF8 { bytes in _ = Glibc.write(descriptor, bytes.baseAddress, bytes.count) }
    }
}
