import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The things the bench measures: the four compared by default, and Tandem on a Redis Cluster when asked for.
enum TargetKind: String, CaseIterable, Sendable {
    case tandemMemory = "tandem-memory"
    case tandemRedis = "tandem-redis"
    case nchanMemory = "nchan-memory"
    case nchanRedis = "nchan-redis"
    /// Tandem nodes on a Redis Cluster of three masters and three replicas (`--target tandem-cluster` only: its six
    /// Redis processes share the cores with everything else, so it is not one of the default comparisons).
    case tandemCluster = "tandem-cluster"

    var flavor: Flavor { self == .nchanMemory || self == .nchanRedis ? .nchan : .tandem }

    /// What runs when no `--target` is given.
    static let defaults: [TargetKind] = [.tandemMemory, .tandemRedis, .nchanMemory, .nchanRedis]
}

/// A running target: where streams go, where publishes go, and the processes whose memory and CPU count.
struct RunningTarget {
    var kind: TargetKind
    /// Ports that hold streams (one per node; hold spreads over them).
    var streamPorts: [Int]
    /// Port that takes the publishes (node B in the two-node Redis shape).
    var publishPort: Int
    /// Processes holding the streams (Tandem nodes, nginx's worker): their RSS is what hold reports.
    var streamPIDs: [Int32]
    /// Every server process of the target, for CPU time.
    var allPIDs: [Int32]
    var redisPID: Int32?
    /// On a cluster, each master's port and process: its CPU per event is reported on its own.
    var redisMasters: [(port: Int, pid: Int32)] = []
    var notes: String
}

struct TargetOptions {
    var tandemPath: String
    var heartbeatSeconds: Int
    var nodes: Int
    var packageDirectory: String
    /// Given to each Tandem node as EVENT_LOOPS (0: Tandem's default, one per core).
    var eventLoops: Int
}

/// Starts a target's processes through `launcher`; the caller stops them with `launcher.stopAll()`.
func startTarget(_ kind: TargetKind, options: TargetOptions, launcher: Launcher) throws -> RunningTarget {
    switch kind {
    case .tandemMemory:
        let (port, pid) = try startTandem(name: "tandem-memory", environment: [:], options: options, launcher: launcher)
        return RunningTarget(kind: kind, streamPorts: [port], publishPort: port, streamPIDs: [pid], allPIDs: [pid], redisPID: nil,
                             notes: "one Tandem node, in-memory broker")
    case .tandemRedis:
        let (redisPort, redisPID) = try startRedis(launcher: launcher)
        let environment = ["BROKER": "redis", "REDIS_URL": "redis://127.0.0.1:\(redisPort)/0"]
        return try startSharedNodes(
            kind, environment: environment, redisPIDs: [redisPID], redisMasters: [(redisPort, redisPID)], sharing: "sharing one redis-server",
            options: options, launcher: launcher)
    case .tandemCluster:
        let cluster = try startRedisCluster(launcher: launcher)
        let environment = ["BROKER": "redis-cluster", "REDIS_CLUSTER_NODES": cluster.seeds]
        return try startSharedNodes(
            kind, environment: environment, redisPIDs: cluster.pids, redisMasters: cluster.masters,
            sharing: "on a Redis Cluster (3 masters, 3 replicas)", options: options, launcher: launcher)
    case .nchanMemory, .nchanRedis:
        var redisPort: Int?
        var redisPID: Int32?
        if kind == .nchanRedis {
            let (port, pid) = try startRedis(launcher: launcher)
            redisPort = port
            redisPID = pid
        }
        let (port, master, worker) = try startNginx(name: kind.rawValue, redisPort: redisPort, options: options, launcher: launcher)
        return RunningTarget(kind: kind, streamPorts: [port], publishPort: port, streamPIDs: [worker], allPIDs: [master, worker] + (redisPID.map { [$0] } ?? []),
                             redisPID: redisPID,
                             notes: "nginx + nchan, worker_processes 1, \(kind == .nchanRedis ? "Redis storage (nchan_use_redis)" : "memory storage")")
    }
}

/// At least two Tandem nodes sharing Redis: streams on every node but the last, publishes on the last (two nodes:
/// streams on A, publishes on B).
func startSharedNodes(
    _ kind: TargetKind, environment: [String: String], redisPIDs: [Int32], redisMasters: [(port: Int, pid: Int32)], sharing: String,
    options: TargetOptions, launcher: Launcher
) throws -> RunningTarget {
    var ports: [Int] = []
    var pids: [Int32] = []
    for node in 0..<max(2, options.nodes) {
        let (port, pid) = try startTandem(name: "\(kind.rawValue)-\(node)", environment: environment, options: options, launcher: launcher)
        ports.append(port)
        pids.append(pid)
    }
    let streamNodes = ports.count == 2 ? 1 : ports.count
    return RunningTarget(
        kind: kind, streamPorts: Array(ports.prefix(streamNodes)), publishPort: ports.last!, streamPIDs: Array(pids.prefix(streamNodes)),
        allPIDs: pids + redisPIDs, redisPID: redisPIDs.count == 1 ? redisPIDs[0] : nil, redisMasters: redisMasters,
        notes: "\(ports.count) Tandem nodes \(sharing); streams on \(streamNodes == 1 ? "node A" : "every node"), publishes on the last node")
}

func startTandem(name: String, environment: [String: String], options: TargetOptions, launcher: Launcher) throws -> (Int, Int32) {
    let port = freePort()
    var env: [String: String] = [
        "HOST": "127.0.0.1",
        "PORT": String(port),
        "LOG_LEVEL": "warning",
        "HEARTBEAT_SECONDS": String(options.heartbeatSeconds),
        "LIMITS_SESSIONS_PER_MINUTE": "0",
        "LIMITS_REQUESTS_PER_MINUTE": "0",
        "LIMITS_MAX_CONNECTIONS_PER_ADDRESS": "100000",
        "LIMITS_MAX_CONNECTIONS": "19900",
        "EVENT_LOOPS": String(options.eventLoops),
    ]
    for (key, value) in environment { env[key] = value }
    let process = try launcher.spawn(name, options.tandemPath, [], environment: env, cwd: options.packageDirectory)
    guard waitForPort(port) else { throw BenchError("\(name) did not start; see \(launcher.logPath(name))") }
    return (port, process.processIdentifier)
}

func startRedis(launcher: Launcher) throws -> (Int, Int32) {
    guard let redis = which("redis-server") else { throw BenchError("redis-server is missing: apt-get install redis-server") }
    let port = freePort()
    let directory = "\(launcher.directory)/redis-\(port)"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let process = try launcher.spawn("redis-\(port)", redis, [
        "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory,
        "--daemonize", "no", "--maxclients", "10000",
    ])
    guard waitForPort(port) else { throw BenchError("redis-server did not start") }
    return (port, process.processIdentifier)
}

/// Six `redis-server --cluster-enabled yes` joined by `redis-cli --cluster create --cluster-replicas 1`, each
/// process the launcher's (stopped with the rest); returns once every slot is served and every replica synced.
func startRedisCluster(launcher: Launcher) throws -> (seeds: String, pids: [Int32], masters: [(port: Int, pid: Int32)]) {
    guard let redis = which("redis-server"), let cli = which("redis-cli") else { throw BenchError("redis-server is missing: apt-get install redis-server") }
    var nodes: [(port: Int, pid: Int32)] = []
    while nodes.count < 6 {
        // The cluster bus listens on port + 10000.
        let port = freePort()
        guard port < 55_536, !nodes.contains(where: { $0.port == port }) else { continue }
        let directory = "\(launcher.directory)/redis-cluster-\(port)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let process = try launcher.spawn("redis-cluster-\(port)", redis, [
            "--port", String(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes", "--cluster-config-file", "\(directory)/nodes.conf",
            "--cluster-node-timeout", "5000", "--repl-diskless-sync-delay", "0", "--shutdown-timeout", "0", "--save", "", "--appendonly", "no", "--dir", directory,
            "--daemonize", "no", "--maxclients", "10000",
        ])
        guard waitForPort(port) else { throw BenchError("redis-server --cluster-enabled did not start") }
        nodes.append((port, process.processIdentifier))
    }
    let addresses = nodes.map { "127.0.0.1:\($0.port)" }
    guard captureCommand(cli, ["--cluster", "create"] + addresses + ["--cluster-replicas", "1", "--cluster-yes"]).status == 0 else {
        throw BenchError("redis-cli --cluster create failed")
    }
    var masters: [(port: Int, pid: Int32)] = []
    for _ in 0..<300 {
        masters = nodes.filter { commandOutput(cli, ["-p", String($0.port), "role"]).hasPrefix("master") }
        let whole = nodes.allSatisfy { commandOutput(cli, ["-p", String($0.port), "cluster", "info"]).contains("cluster_state:ok") }
        let synced = nodes.allSatisfy { node in
            let replication = commandOutput(cli, ["-p", String(node.port), "info", "replication"])
            return replication.contains("role:master") || replication.contains("master_link_status:up")
        }
        if masters.count == 3, whole, synced { break }
        usleep(100_000)
    }
    guard masters.count == 3 else { throw BenchError("the Redis Cluster did not come up with three masters") }
    return (addresses.prefix(2).joined(separator: ","), nodes.map(\.pid), masters)
}

let nchanModule = "/usr/lib/nginx/modules/ngx_nchan_module.so"

/// nginx with the nchan module: installs Debian's `nginx` and `libnginx-mod-nchan` when missing.
func ensureNginx() throws -> String {
    if which("nginx") == nil || !FileManager.default.fileExists(atPath: nchanModule) {
        print("# installing nginx and libnginx-mod-nchan with apt-get", to: &standardError)
        runCommand("/usr/bin/env", ["DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq", "nginx", "libnginx-mod-nchan"])
    }
    guard let nginx = which("nginx"), FileManager.default.fileExists(atPath: nchanModule) else {
        throw BenchError("nginx with nchan is missing: apt-get install nginx libnginx-mod-nchan")
    }
    return nginx
}

func startNginx(name: String, redisPort: Int?, options: TargetOptions, launcher: Launcher) throws -> (Int, Int32, Int32) {
    let nginx = try ensureNginx()
    let port = freePort()
    let prefix = "\(launcher.directory)/\(name)"
    try FileManager.default.createDirectory(atPath: "\(prefix)/logs", withIntermediateDirectories: true)
    try FileManager.default.createDirectory(atPath: "\(prefix)/tmp", withIntermediateDirectories: true)
    let redis = redisPort.map { "nchan_redis_url \"redis://127.0.0.1:\($0)\";\n            nchan_use_redis on;" } ?? ""
    let config = """
    load_module \(nchanModule);
    worker_processes 1;
    worker_rlimit_nofile 20000;
    daemon off;
    master_process on;
    pid \(prefix)/nginx.pid;
    error_log \(prefix)/logs/error.log warn;
    events { worker_connections 19950; multi_accept on; }
    http {
        access_log off;
        client_body_temp_path \(prefix)/tmp/body;
        proxy_temp_path \(prefix)/tmp/proxy;
        fastcgi_temp_path \(prefix)/tmp/fastcgi;
        uwsgi_temp_path \(prefix)/tmp/uwsgi;
        scgi_temp_path \(prefix)/tmp/scgi;
        keepalive_requests 100000000;
        keepalive_timeout 300s;
        nchan_shared_memory_size 512M;
        server {
            listen 127.0.0.1:\(port) backlog=4096;
            location ~ ^/sub/([A-Za-z0-9_-]+)$ {
                nchan_subscriber eventsource;
                nchan_channel_id $1;
                nchan_eventsource_ping_interval \(options.heartbeatSeconds);
                nchan_eventsource_ping_comment "heartbeat";
                \(redis)
            }
            location ~ ^/pub/([A-Za-z0-9_-]+)$ {
                nchan_publisher;
                nchan_channel_id $1;
                nchan_message_buffer_length 3;
                nchan_message_timeout 600s;
                \(redis)
            }
        }
    }
    """
    try config.write(toFile: "\(prefix)/nginx.conf", atomically: true, encoding: .utf8)
    let master = try launcher.spawn(name, nginx, ["-p", prefix, "-c", "\(prefix)/nginx.conf"])
    guard waitForPort(port) else { throw BenchError("nginx did not start; see \(prefix)/logs/error.log and \(launcher.logPath(name))") }
    var worker: Int32 = 0
    for _ in 0..<100 {
        if let child = childPIDs(of: master.processIdentifier).first { worker = child; break }
        usleep(20_000)
    }
    return (port, master.processIdentifier, worker)
}

nonisolated(unsafe) var standardError = StandardError()

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) { FileHandle.standardError.write(Data(string.utf8)) }
}
