import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

@inline(__always) func monotonicNanos() -> UInt64 { NIODeadline.now().uptimeNanoseconds }

/// One event loop's share of the streams and publishers. Every method runs on `loop`: the shard is confined to it,
/// so it takes no lock (hence `@unchecked Sendable`: it is only handed across threads to be called on its loop).
final class Shard: @unchecked Sendable {
    private struct Slot {
        var channel: (any Channel)?
        var generation: UInt32 = 0
        var session = ""
        /// The phone key cookie the session's claim gave this slot's phone (Tandem's flow).
        var phoneCookie = ""
        var sent: Int8 = 0
        var opened = false
        /// Published events not yet seen on the stream: (event number, send time).
        var pending: [(Int8, UInt64)] = []
    }

    let loop: any EventLoop
    let spec: ShardSpec
    private var slots: [Slot]
    private var ready: [Int32] = []
    private var pool: [PublishHandler?] = []
    private var nextPool = 0
    private var waitingToConnect: [Int] = []
    private var connecting = 0
    private var sessionCounter = 0
    private var running = true
    private var random: UInt64
    private var result = ShardResult()
    private var open = 0
    private var scheduler: RepeatedTask?
    private var sweeper: RepeatedTask?
    private var publishStart: UInt64 = 0
    private var issued = 0
    private var windowEnd: UInt64 = .max
    private var poolDirty: Set<Int> = []

    init(loop: any EventLoop, spec: ShardSpec, seed: UInt64) {
        self.loop = loop
        self.spec = spec
        self.slots = Array(repeating: Slot(), count: spec.slots)
        self.random = seed | 1
        result.latencies.reserveCapacity(1 << 16)
    }

    // MARK: driven from the orchestrator (each call submitted to `loop`)

    /// Connects the publishing pool, then starts opening every stream (at most `maxConnecting` at once).
    func start() -> EventLoopFuture<Void> {
        loop.flatSubmit {
            let pools: [EventLoopFuture<Void>] = self.spec.mode == .hold ? [] : (0..<self.spec.poolSize).map { self.connectPublisher($0) }
            return EventLoopFuture.andAllSucceed(pools, on: self.loop).map {
                for index in 0..<self.spec.slots { self.openSlot(index) }
                if self.spec.mode != .hold {
                    self.sweeper = self.loop.scheduleRepeatedTask(initialDelay: .milliseconds(100), delay: .milliseconds(100)) { _ in
                        self.sweepLost()
                    }
                }
            }
        }
    }

    /// Streams opened so far and those that failed, to wait for establishment.
    func progress() -> EventLoopFuture<(established: Int, failed: Int)> {
        loop.submit { (self.result.established, self.result.failedOpens) }
    }

    /// Starts the fixed-rate schedule (fanout) and the measurement window (all modes).
    func beginWindow(duration: TimeAmount) -> EventLoopFuture<Void> {
        loop.submit {
            self.publishStart = monotonicNanos()
            self.windowEnd = self.publishStart + UInt64(duration.nanoseconds)
            self.result = ShardResult(established: self.result.established, failedOpens: self.result.failedOpens, dropped: self.result.dropped, statuses: self.result.statuses)
            self.result.latencies.reserveCapacity(Int(Double(duration.nanoseconds) / 1e9 * max(self.spec.ratePerSecond, 1000)))
            if self.spec.mode == .flow {
                let waiting = self.ready
                self.ready = []
                for index in waiting { self.publish(Int(index), flush: false) }
                self.flushPool()
            }
            if self.spec.mode == .fanout {
                self.issued = 0
                self.scheduler = self.loop.scheduleRepeatedTask(initialDelay: .zero, delay: .microseconds(500)) { _ in
                    self.tick()
                }
            }
        }
    }

    /// Ends the window: no new publishes or flows; streams stay open.
    func endWindow() -> EventLoopFuture<Void> {
        loop.submit {
            self.running = false
            self.scheduler?.cancel()
            self.scheduler = nil
            self.flushPool()
        }
    }

    /// Published events still awaited.
    func pendingCount() -> EventLoopFuture<Int> {
        loop.submit { self.slots.reduce(0) { $0 + $1.pending.count } }
    }

    /// Counts what is still awaited as lost, closes everything, and returns the shard's result.
    func finish() -> EventLoopFuture<ShardResult> {
        loop.submit {
            self.running = false
            self.sweeper?.cancel()
            self.scheduler?.cancel()
            var result = self.result
            result.openAtEnd = self.open
            for index in self.slots.indices {
                result.lost += self.slots[index].pending.count
                self.slots[index].pending = []
                self.slots[index].generation &+= 1
                if let channel = self.slots[index].channel { self.closeHard(channel) }
                self.slots[index].channel = nil
            }
            for publisher in self.pool { publisher?.close() }
            self.pool = []
            return result
        }
    }

    // MARK: streams

    private func openSlot(_ index: Int) {
        slots[index].generation &+= 1
        slots[index].sent = 0
        slots[index].opened = false
        slots[index].pending.removeAll(keepingCapacity: true)
        slots[index].channel = nil
        sessionCounter += 1
        slots[index].session = spec.idPrefix + String(index, radix: 36) + "x" + String(sessionCounter, radix: 36)
        slots[index].phoneCookie = ""
        if connecting >= spec.maxConnecting {
            waitingToConnect.append(index)
        } else {
            connect(index)
        }
    }

    private func connect(_ index: Int) {
        connecting += 1
        let generation = slots[index].generation
        let path = spec.flavor == .tandem ? "/api/events?session=" + slots[index].session : "/sub/" + slots[index].session
        let request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
        let source = spec.sources[(spec.sourceOffset + index) % spec.sources.count]
        ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(ChannelOptions.Types.SocketOption(level: SocketOptionLevel(IPPROTO_IP), name: 24), value: 1)  // IP_BIND_ADDRESS_NO_PORT
            .connectTimeout(.seconds(10))
            .bind(to: source)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(StreamHandler(shard: self, slot: index, generation: generation, request: request))
                }
            }
            .connect(to: spec.streamTarget)
            .whenComplete { [self] outcome in
                switch outcome {
                case .success(let channel):
                    if slots[index].generation == generation { slots[index].channel = channel } else { closeHard(channel) }
                case .failure:
                    result.statuses[-1, default: 0] += 1
                    connectEnded()
                    guard slots[index].generation == generation else { return }
                    result.failedOpens += 1
                    if running, spec.mode != .hold {
                        loop.scheduleTask(in: .milliseconds(100)) { [self] in
                            if running, slots[index].generation == generation { openSlot(index) }
                        }
                    }
                }
            }
    }

    private func connectEnded() {
        connecting -= 1
        while connecting < spec.maxConnecting, let next = waitingToConnect.popLast() {
            connect(next)
        }
    }

    private func closeHard(_ channel: any Channel) {
        // Linger 0: the close is a reset, so no TIME_WAIT piles up on the client's ports under churn.
        if let provider = channel as? any SocketOptionProvider {
            _ = provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).always { _ in channel.close(promise: nil) }
        } else {
            channel.close(promise: nil)
        }
    }

    /// A recycled slot: the old stream is closed (its callbacks no longer count) and a new session opened.
    private func recycle(_ index: Int) {
        let channel = slots[index].channel
        slots[index].generation &+= 1
        if slots[index].opened { open -= 1 }
        slots[index].opened = false
        if let channel { closeHard(channel) }
        if running { openSlot(index) } else { slots[index].channel = nil; slots[index].pending = [] }
    }

    func streamHead(_ index: Int, _ generation: UInt32, status: Int) {
        guard slots[index].generation == generation else { return }
        if status != 200 {
            result.statuses[status, default: 0] += 1
            return  // the handler closes; streamClosed counts the failure
        }
        if spec.flavor == .nchan { streamOpened(index) }
    }

    func streamEvent(_ index: Int, _ generation: UInt32, id: Int?) {
        let now = monotonicNanos()
        guard slots[index].generation == generation else { return }
        if spec.flavor == .tandem, id == 0 {
            if !slots[index].opened { streamOpened(index) }
            return
        }
        guard !slots[index].pending.isEmpty else {
            result.unexpected += 1
            return
        }
        let (event, sentAt) = slots[index].pending.removeFirst()
        if spec.flavor == .tandem, id != Int(event) { result.misordered += 1 }
        result.delivered += 1
        result.latencies.append(now &- sentAt)
        if spec.eventsPerStream > 0, event == spec.eventsPerStream {
            if spec.mode == .flow, now <= windowEnd { result.flows += 1 }
            recycle(index)
        }
    }

    func streamComment(_ index: Int, _ generation: UInt32) {
        result.heartbeats += 1
    }

    private func streamOpened(_ index: Int) {
        slots[index].opened = true
        open += 1
        result.established += 1
        connectEnded()
        switch spec.mode {
        case .hold: break
        case .flow:
            // Flows start with the window, all at once; later ones as soon as their stream is open.
            if publishStart == 0 { ready.append(Int32(index)) } else if running { publish(index, flush: true) }
        case .fanout: ready.append(Int32(index))
        }
    }

    func streamClosed(_ index: Int, _ generation: UInt32) {
        guard slots[index].generation == generation else { return }
        slots[index].generation &+= 1
        slots[index].channel = nil
        if slots[index].opened {
            open -= 1
            result.dropped += 1
            result.lost += slots[index].pending.count
        } else {
            result.failedOpens += 1
            connectEnded()
        }
        slots[index].opened = false
        slots[index].pending.removeAll()
        if let position = ready.firstIndex(of: Int32(index)) { ready.swapAt(position, ready.count - 1); ready.removeLast() }
        if running, spec.mode != .hold {
            loop.scheduleTask(in: .milliseconds(50)) { [self] in
                if running, slots[index].channel == nil, !slots[index].opened { openSlot(index) }
            }
        }
    }

    // MARK: publishing

    private func tick() {
        let now = monotonicNanos()
        guard now < windowEnd else {
            scheduler?.cancel()
            scheduler = nil
            return
        }
        let due = Int(Double(now - publishStart) * spec.ratePerSecond / 1e9) + 1 - issued  // event k is due at k/R
        guard due > 0 else { return }
        for n in 0..<due {
            if ready.isEmpty {
                result.unsent += 1
                continue
            }
            let pick = Int(nextRandom() % UInt64(ready.count))
            let index = Int(ready[pick])
            ready.swapAt(pick, ready.count - 1)
            ready.removeLast()
            let intended = publishStart + UInt64(Double(issued + n) * 1e9 / spec.ratePerSecond)
            result.lags.append(now > intended ? now - intended : 0)
            publish(index, flush: false)
        }
        issued += due
        flushPool()
    }

    private func nextRandom() -> UInt64 {
        random ^= random << 13
        random ^= random >> 7
        random ^= random << 17
        return random
    }

    private func publish(_ index: Int, flush: Bool) {
        slots[index].sent += 1
        let event = slots[index].sent
        let session = slots[index].session
        let request: String
        switch spec.flavor {
        case .tandem:
            switch event {
            case 1:
                request = "GET /api/validate-session?session=\(session) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            case 2:
                let body = "{\"sessionId\":\"\(session)\"}"
                request = "POST /api/input-started HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: \(slots[index].phoneCookie)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
            default:
                let body = "{\"sessionId\":\"\(session)\",\"name\":\"bench\",\"phone\":\"0901234\"}"
                request = "POST /api/submit HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: \(slots[index].phoneCookie)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
            }
        case .nchan:
            let body = String(event)
            request = "POST /pub/\(session) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
            if spec.eventsPerStream == 0, event >= 100 { slots[index].sent = 0 }
        }
        let poolIndex = nextPool
        nextPool = (nextPool + 1) % pool.count
        guard let publisher = pool[poolIndex] else {
            result.publishFailed += 1
            if running, spec.mode == .fanout, spec.eventsPerStream == 0 { ready.append(Int32(index)) } else { recycle(index) }
            return
        }
        slots[index].pending.append((event, monotonicNanos()))
        result.published += 1
        publisher.send(request, tag: PublishTag(slot: Int32(index), generation: slots[index].generation, event: event), flush: flush)
        if !flush { poolDirty.insert(poolIndex) }
    }

    private func flushPool() {
        for index in poolDirty { pool[index]?.flush() }
        poolDirty.removeAll(keepingCapacity: true)
    }

    func published(_ tag: PublishTag, status: Int, phoneCookie: String? = nil) {
        let index = Int(tag.slot)
        guard slots[index].generation == tag.generation else { return }
        if let phoneCookie { slots[index].phoneCookie = phoneCookie }
        guard (200..<300).contains(status) else {
            result.publishFailed += 1
            result.statuses[status, default: 0] += 1
            slots[index].pending.removeAll { $0.0 == tag.event }
            if spec.eventsPerStream > 0 { recycle(index) } else if running { ready.append(Int32(index)) }
            return
        }
        switch spec.mode {
        case .hold: break
        case .flow:
            if spec.flavor == .tandem, tag.event < spec.eventsPerStream { publish(index, flush: true) }
        case .fanout:
            if spec.eventsPerStream == 0 || tag.event < spec.eventsPerStream { ready.append(Int32(index)) }
        }
    }

    private func sweepLost() {
        let cutoff = monotonicNanos() &- UInt64(spec.lossDeadline.nanoseconds)
        for index in slots.indices {
            guard let first = slots[index].pending.first, first.1 < cutoff else { continue }
            result.lost += slots[index].pending.count
            slots[index].pending.removeAll()
            if spec.eventsPerStream > 0 { recycle(index) }
        }
    }

    // MARK: the publishing pool

    private func connectPublisher(_ index: Int) -> EventLoopFuture<Void> {
        if pool.count <= index { pool.append(contentsOf: Array(repeating: nil, count: index + 1 - pool.count)) }
        let source = spec.sources[index % spec.sources.count]
        return ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(ChannelOptions.Types.SocketOption(level: SocketOptionLevel(IPPROTO_IP), name: 24), value: 1)
            .connectTimeout(.seconds(10))
            .bind(to: source)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = PublishHandler(shard: self, index: index)
                    try channel.pipeline.syncOperations.addHandler(handler)
                    pool[index] = handler
                }
            }
            .connect(to: spec.publishTarget)
            .map { _ in }
    }

    func publisherClosed(_ index: Int, unanswered: [PublishTag]) {
        pool[index] = nil
        for tag in unanswered { published(tag, status: -2) }
        if running {
            loop.scheduleTask(in: .milliseconds(50)) { [self] in
                if running { _ = connectPublisher(index) }
            }
        }
    }
}
