import NIOCore

/// Where a command about a session goes: this loop's connection to the one Redis, or, on a cluster, the master of the
/// key's slot. Every key of a session shares its `{ID}` hash tag, so a pipeline about one session goes to one place.
enum RedisRoute: Sendable {
    case server(RedisConnection)
    case cluster(RedisClusterClient)

    /// One command about `key`; a Redis error reply is a value.
    func send(_ arguments: [String], key: String) async throws -> RESPValue {
        switch self {
        case .server(let connection): try await connection.send(arguments).get()
        case .cluster(let client): try await client.send(arguments, key: key)
        }
    }

    /// Commands about keys of `key`'s slot, in one write, run by Redis in this order.
    func send(pipeline commands: [[String]], key: String) async throws -> [RESPValue] {
        switch self {
        case .server(let connection):
            return try await commands.map { connection.send($0) }.replies()
        case .cluster(let client):
            return try await client.send(pipeline: commands, key: key)
        }
    }

    /// Pipelines about different sessions, all in flight at once: in one write on one Redis; on a cluster, grouped by
    /// slot's master, each group in one write. The results are in the order given.
    func send(each pipelines: [(pipeline: [[String]], key: String)]) async -> [Result<[RESPValue], any Error>] {
        switch self {
        case .server(let connection):
            let futures = pipelines.map { $0.pipeline.map { connection.send($0) } }
            var results: [Result<[RESPValue], any Error>] = []
            results.reserveCapacity(futures.count)
            for pipeline in futures {
                do {
                    results.append(.success(try await pipeline.replies()))
                } catch {
                    results.append(.failure(error))
                }
            }
            return results
        case .cluster(let client):
            return await client.send(batch: pipelines)
        }
    }
}

extension Array where Element == EventLoopFuture<RESPValue> {
    /// The replies of commands sent pipelined, in the order sent; throws when the connection broke first.
    func replies() async throws -> [RESPValue] {
        var replies: [RESPValue] = []
        replies.reserveCapacity(count)
        for future in self { replies.append(try await future.get()) }
        return replies
    }
}
