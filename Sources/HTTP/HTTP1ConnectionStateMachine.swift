import NIOCore
import NIOHTTP1

/// The state of one HTTP/1.1 connection: which request is being read, which wait their turn, which is being
/// answered, and whether the connection parses requests, carries an event stream, or is closing.
///
/// A value type whose methods say what to do next; ``HTTPConnectionHandler`` does it (writes, flushes, timers,
/// tasks) and owns the bytes and the parser. Time comes in as arguments (the event loop's `now`), so tests drive the
/// machine with no clock and no socket.
///
/// - Requests are answered one at a time and in order; pipelined ones wait their turn, up to `pipelineLimit` in
///   flight, beyond which reading stops.
/// - A refusal (or the answer to a request with `Upgrade`) ends the parsing: it is answered in its turn, after the
///   responses before it, then the connection closes without a reset (see ``Phase/refusing``).
/// - An event stream ends the parsing too; the connection ends with the stream.
struct HTTP1ConnectionStateMachine {
    /// A request's turn: answered by the responder, or refused by the connection itself.
    enum Turn {
        case request(HTTPExchange)
        case bodyTooLarge(HTTPExchange)
        case unparsable(HTTP1ParseError)
        case timedOut
    }

    /// What the connection does with the bytes it receives.
    enum Phase: Equatable {
        /// Parses requests and answers them in order.
        case serving
        /// A refusal (or the answer to a request with `Upgrade`) is due: nothing more is parsed. Once it is written
        /// the output closes first and what the client still sends is read and dropped, so that the client reads the
        /// refusal instead of a reset (RFC 9112 §9.6).
        case refusing
        /// The connection's last bytes are being written; it closes once they are out (`afterRefusal`: the output
        /// closes first, as above).
        case closing(afterRefusal: Bool)
        /// An event stream is open: what arrives is read, to notice the client leaving, and dropped.
        case eventStream
        case closed
    }

    /// The event stream the connection carries, for its log line and its end.
    struct OpenEventStream {
        let exchange: HTTPExchange
        let status: HTTPResponseStatus
        /// Whether its body is chunked, so it ends with the last chunk (not for HEAD, or an HTTP/1.0 client).
        let chunked: Bool
    }

    /// What to do with the connection once its last bytes are written.
    enum CloseAction: Equatable {
        case close
        /// Close the output, read and drop until the client closes (or a second passes): see ``Phase/refusing``.
        case closeOutputAndDrain
        /// It closed already.
        case none
    }

    /// What the server's drain asks of this connection.
    enum DrainAction: Equatable {
        /// Nothing now: it closes after the response in flight.
        case none
        /// End its event stream (the stream's end closes the connection).
        case endEventStream
        case close
    }

    let pipelineLimit: Int
    private(set) var phase: Phase = .serving
    /// The request whose head has arrived and whose body has not ended.
    private(set) var reading: HTTPExchange?
    /// `reading` sent `Expect: 100-continue`, not answered yet: answered when its turn comes.
    private var readingAwaitsContinue = false
    /// Complete requests (and refusals) waiting for the response before them: at most a few, and an array allocates
    /// nothing until the first one (most connections, and every event stream, never have one).
    private var waiting: [Turn] = []
    /// The request with the responder, or whose response is being written.
    private(set) var responding: HTTPExchange?
    private(set) var eventStream: OpenEventStream?
    /// The server asked this connection to close once idle.
    private(set) var draining = false
    /// A `read()` held back while enough is in flight; issued when there is room again.
    private var readHeldBack = false
    /// Inside a parse of the received bytes: a response answered on the spot does not parse again (the running parse
    /// goes on) and leaves its flush to the end of the parse, so the answers to pipelined requests leave in one write.
    private var isParsing = false
    /// A flush is due at the end of the parse (flushing inside it can call back into reading).
    private var flushAfterParse = false
    /// When the last response ended (or the connection opened); nil while a request is in flight.
    private var idleSince: NIODeadline?
    /// Part of a request's head has arrived but not all of it: a client that sends its head byte by byte gets the
    /// request deadline too, not the much longer idle timeout.
    private var headPending = false

    init(pipelineLimit: Int, openedAt now: NIODeadline) {
        self.pipelineLimit = pipelineLimit
        self.idleSince = now
    }

    // MARK: Reading

    /// Requests in flight: being read, waiting, or being answered.
    var inFlight: Int { (reading == nil ? 0 : 1) + waiting.count + (responding == nil ? 0 : 1) }

    var isIdle: Bool { inFlight == 0 && eventStream == nil }

    /// Whether received bytes are parsed as requests; otherwise they are dropped unparsed.
    var parsesRequests: Bool { phase == .serving }

    /// Whether to read more: not while the pipeline is full, not while the client does not read its answers (the
    /// channel is not writable), and not while a request queued behind another is receiving its body (that body
    /// could be large; it waits in the client's socket instead of here).
    func mayRead(isWritable: Bool) -> Bool {
        switch phase {
        case .eventStream, .refusing, .closing(afterRefusal: true): return true
        case .closing(afterRefusal: false), .closed: return false
        case .serving:
            if inFlight >= pipelineLimit || !isWritable { return false }
            if reading != nil, responding != nil || !waiting.isEmpty { return false }
            return true
        }
    }

    /// The channel asks for a read: true to read now; false holds it back until ``resumeReading(isWritable:)``.
    mutating func readRequested(isWritable: Bool) -> Bool {
        if mayRead(isWritable: isWritable) { return true }
        readHeldBack = true
        return false
    }

    /// Whether a read held back is to be issued now.
    mutating func resumeReading(isWritable: Bool) -> Bool {
        guard readHeldBack, mayRead(isWritable: isWritable) else { return false }
        readHeldBack = false
        return true
    }

    /// A parse of the received bytes begins; false while one runs (that one goes on and reaches what is new).
    mutating func parseStarted() -> Bool {
        guard !isParsing else { return false }
        isParsing = true
        return true
    }

    /// The parse ended: whether to flush what it answered.
    mutating func parseEnded() -> Bool {
        isParsing = false
        defer { flushAfterParse = false }
        return flushAfterParse
    }

    /// Whether the parse takes another part (head, body, end) from the bytes received. Bytes already received are
    /// parsed, a queued request's body too (bounded by the body limit): what bounds the requests in flight is that
    /// no more is read (see ``mayRead(isWritable:)``).
    func parsesNext(isWritable: Bool) -> Bool {
        phase == .serving && (reading != nil || inFlight < pipelineLimit) && isWritable
    }

    /// A request's head arrived: it is being read. True when `100 Continue` is to be sent now.
    mutating func headArrived(_ exchange: HTTPExchange, awaitsContinue: Bool) -> Bool {
        idleSince = nil
        headPending = false
        reading = exchange
        readingAwaitsContinue = awaitsContinue
        return continueDue()
    }

    /// A request's head declares a body over the limit: it is refused (the turn to take now, if its turn has come).
    mutating func headArrivedTooLarge(_ exchange: HTTPExchange) -> Turn? {
        idleSince = nil
        headPending = false
        return refuse(.bodyTooLarge(exchange))
    }

    /// Whether to send `100 Continue` now: the request being read asked for it and nothing is ahead of it, so its
    /// body is sent only when it is wanted. Its flush is left to the end of the parse.
    mutating func continueDue() -> Bool {
        guard reading != nil, readingAwaitsContinue, responding == nil, waiting.isEmpty else { return false }
        readingAwaitsContinue = false
        flushAfterParse = true
        return true
    }

    /// The request being read is complete: returned when its turn is now, else it waits for the ones before it.
    /// `upgrade`: it asked for an upgrade, which is never granted: it is answered like any other, then the connection
    /// closes, draining like a refusal, since what follows may be the other protocol.
    mutating func requestEnded(upgrade: Bool) -> HTTPExchange? {
        if upgrade { phase = .refusing }
        guard let exchange = reading else { return nil }
        reading = nil
        readingAwaitsContinue = false
        guard responding == nil, waiting.isEmpty else {
            waiting.append(.request(exchange))
            return nil
        }
        responding = exchange
        return exchange
    }

    /// Nothing more is parsed on this connection; `turn` answers in its turn (returned when that is now) and the
    /// connection closes after it.
    mutating func refuse(_ turn: Turn) -> Turn? {
        phase = .refusing
        reading = nil
        readingAwaitsContinue = false
        guard responding == nil, waiting.isEmpty else {
            waiting.append(turn)
            return nil
        }
        return begin(turn)
    }

    /// A parse ended with bytes of a head that is not complete yet (`pending`), or with none.
    mutating func headBytesReceived(pending: Bool) {
        headPending = pending && phase == .serving && reading == nil
    }

    /// Whether the request being read gets a deadline: its turn has come and its head or body is still arriving. The
    /// deadline runs from the first byte of the head when that came alone, and covers head and body together. A
    /// request that arrives whole (nearly all of them) costs no timer.
    var wantsRequestTimer: Bool {
        phase == .serving && (reading != nil || headPending) && responding == nil && waiting.isEmpty
    }

    /// The request's deadline passed: it is refused (the turn to take now, if any).
    mutating func requestTimedOut() -> Turn? {
        guard reading != nil || headPending, phase == .serving else { return nil }
        headPending = false
        return refuse(.timedOut)
    }

    // MARK: Responding

    /// A turn begins: its request (or refused request) is the one being answered.
    private mutating func begin(_ turn: Turn) -> Turn {
        switch turn {
        case .request(let exchange), .bodyTooLarge(let exchange): responding = exchange
        case .unparsable, .timedOut: break
        }
        return turn
    }

    /// Whether a response for `responding` may still be written.
    var mayWriteResponse: Bool { responding != nil && phase != .closed }

    /// Whether the connection stays open after the response to `exchange`.
    func keepsAlive(_ exchange: HTTPExchange, serverDraining: Bool) -> Bool {
        exchange.isKeepAlive && !draining && !serverDraining
    }

    /// The response in flight is written (or being written, for its last bytes).
    mutating func responseEnded() {
        responding = nil
    }

    /// After a response that keeps the connection: the waiting turn to take now, if any.
    mutating func nextTurn() -> Turn? {
        guard !waiting.isEmpty else { return nil }
        return begin(waiting.removeFirst())
    }

    /// Whether the connection is closing (its last bytes are written or being written).
    var isClosing: Bool {
        if case .closing = phase { return true }
        return false
    }

    /// A flush is wanted: true to flush now, false when the running parse flushes at its end.
    mutating func flushNow() -> Bool {
        guard isParsing else { return true }
        flushAfterParse = true
        return false
    }

    /// A flush left for the parse's end that no parse will make: true to flush now.
    mutating func flushDue() -> Bool {
        guard flushAfterParse, !isParsing else { return false }
        flushAfterParse = false
        return true
    }

    /// After a response: if nothing is in flight, the connection is idle from `now`. True when it is to close
    /// instead (the server drains).
    mutating func closesWhenIdle(now: NIODeadline, serverDraining: Bool) -> Bool {
        guard isIdle else { return false }
        if draining || serverDraining { return true }
        idleSince = now
        return false
    }

    /// The connection's last bytes are being written: nothing more is parsed, and it closes once they are out. Until
    /// then it counts as idle from `now`, so a client that never reads them is closed by the idle sweep.
    mutating func closeAfterWriting(now: NIODeadline) {
        switch phase {
        case .serving: phase = .closing(afterRefusal: false)
        case .refusing: phase = .closing(afterRefusal: true)
        case .closing, .eventStream, .closed: break
        }
        idleSince = now
    }

    /// The last bytes are out: how the connection closes.
    func lastBytesWritten() -> CloseAction {
        switch phase {
        case .closing(afterRefusal: true): return .closeOutputAndDrain
        case .closed: return .none
        case .serving, .refusing, .closing(afterRefusal: false), .eventStream: return .close
        }
    }

    // MARK: Event streams

    /// The response to `responding` is an event stream: the connection carries it until it ends, and parses
    /// nothing more (a long-lived stream holds no request).
    mutating func eventStreamStarted(_ stream: OpenEventStream) {
        phase = .eventStream
        eventStream = stream
        responding = nil
        reading = nil
        readingAwaitsContinue = false
        waiting = []
    }

    /// The event stream ended (its producer returned): returned for its log line unless the connection closed
    /// first; the connection closes.
    mutating func eventStreamEnded() -> OpenEventStream? {
        guard let stream = eventStream, phase != .closed else { return nil }
        eventStream = nil
        phase = .closing(afterRefusal: false)
        return stream
    }

    // MARK: The connection's end

    /// The server drains: close when idle, now or after the response in flight, and end an event stream.
    mutating func drain() -> DrainAction {
        draining = true
        if eventStream != nil { return .endEventStream }
        return isIdle ? .close : .none
    }

    /// The connection closed. Returns what was in flight, for its log lines.
    mutating func closed() -> (responding: HTTPExchange?, eventStream: OpenEventStream?) {
        let inFlight = (responding, eventStream)
        phase = .closed
        responding = nil
        reading = nil
        readingAwaitsContinue = false
        waiting = []
        eventStream = nil
        return inFlight
    }

    /// Whether the connection has been idle since before `deadline`.
    func isIdle(before deadline: NIODeadline) -> Bool {
        guard let idleSince else { return false }
        return idleSince < deadline
    }

    /// The idle sweep closes the connection.
    mutating func closedForIdleness() {
        idleSince = nil
    }
}
