import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Where a long run is, on stderr only (stdout stays JSON lines): the scenario and target, the step, the rate, the
/// time elapsed and the time left. On a terminal one line is rewritten in place every second; otherwise (a log, a
/// pipe) a plain line at each step and every few seconds. A ticker on a Dispatch queue prints while the scenario
/// blocks its thread, so the state sits behind a lock.
final class ProgressReporter: Sendable {
    enum Style: Equatable {
        /// One line rewritten with `\r` and erase-to-end-of-line.
        case terminal
        /// Plain lines: each step, then every ``plainInterval`` seconds.
        case lines
        /// `--quiet`: no progress (notes such as a target's start still print).
        case off
    }

    /// What is running now.
    struct Step: Sendable {
        var scenario: String
        var target: String
        /// e.g. `4000/s, step 4 of 15 (1000-64000)`, or `19000 streams held 20 s`.
        var detail: String
        /// How long this step should take, and the rest of the scenario after it (estimates: the window plus opening
        /// and draining; a knee also ends early at its first failing step).
        var expectedSeconds: Double
        var secondsAfter: Double = 0
    }

    private struct State {
        var step: Step?
        var stepStart = ContinuousClock.now
        var scenarioStart = ContinuousClock.now
        /// Scenarios begun so far, and how many the command will run (0: not said).
        var scenariosBegun = 0
        var scenariosPlanned = 0
        var lastPrinted: ContinuousClock.Instant?
        /// A terminal line is on screen that a note must erase first.
        var lineShown = false
    }

    let style: Style
    private let runStart = ContinuousClock.now
    private let state = Mutex(State())
    static let plainInterval = 5.0
    /// Columns the terminal line fits in: a longer line would wrap, and `\r` would then rewrite only its last row.
    private static var terminalColumns: Int {
        var size = winsize()
        if ioctl(STDERR_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 { return max(40, Int(size.ws_col)) }
        return max(40, Int(ProcessInfo.processInfo.environment["COLUMNS"] ?? "") ?? 80)
    }

    init(quiet: Bool) {
        style = quiet ? .off : isatty(STDERR_FILENO) == 1 ? .terminal : .lines
    }

    /// How many scenarios the command runs: the lines then say which one of them is running (`[5/18]`), a count
    /// that stays exact where a time estimate cannot (a knee ends at its first failing step).
    func expectScenarios(_ count: Int) {
        state.withLock { $0.scenariosPlanned = max(0, count) }
    }

    /// A new step; `newScenario` false for the steps of one knee, so its elapsed time counts from its first step.
    func begin(_ step: Step, newScenario: Bool = true) {
        state.withLock { state in
            let now = ContinuousClock.now
            state.step = step
            state.stepStart = now
            if newScenario {
                state.scenarioStart = now
                state.scenariosBegun += 1
            }
            state.lastPrinted = nil
            show(&state, now: now)
        }
    }

    /// Called every second by the ticker: rewrites the terminal line, or prints a plain line every few seconds.
    func tick() {
        state.withLock { state in
            let now = ContinuousClock.now
            if style == .lines, let last = state.lastPrinted, seconds(now - last) < Self.plainInterval { return }
            show(&state, now: now)
        }
    }

    /// A message of its own on stderr (a target started, a failure), not overwritten by the next progress line.
    func note(_ text: String) {
        state.withLock { state in
            write((state.lineShown ? "\r\u{1B}[K" : "") + text + "\n")
            state.lineShown = false
        }
    }

    /// The run is over: the terminal line is erased, and the run's length said once.
    func finish() {
        state.withLock { state in
            state.step = nil
            guard style != .off else { return }
            write((state.lineShown ? "\r\u{1B}[K" : "") + "# run finished in \(Self.clock(seconds(.now - runStart)))\n")
            state.lineShown = false
        }
    }

    /// Ticks every second on a global queue until the returned source is cancelled; nil when there is nothing to show.
    func startTicking() -> (any DispatchSourceTimer)? {
        guard style != .off else { return nil }
        let timer = DispatchSource.makeTimerSource(queue: .global())
        timer.schedule(deadline: .now() + 1, repeating: 1)
        timer.setEventHandler { [self] in tick() }
        timer.resume()
        return timer
    }

    private func show(_ state: inout State, now: ContinuousClock.Instant) {
        guard style != .off, let step = state.step else { return }
        let stepElapsed = seconds(now - state.stepStart)
        let left = max(0, step.expectedSeconds - stepElapsed) + step.secondsAfter
        let counter = state.scenariosPlanned > 0 ? "[\(state.scenariosBegun)/\(max(state.scenariosPlanned, state.scenariosBegun))] " : ""
        let head = "\(counter)\(step.scenario) \(step.target): \(step.detail)"
        let elapsed = Self.clock(seconds(now - state.scenarioStart))
        let run = Self.clock(seconds(now - runStart))
        // The scenario's: the run's cannot be known (a knee ends at its first failing step), the `[k/n]` says where
        // in the run this is.
        let remaining = "~\(Self.clock(left)) left in this scenario"
        switch style {
        case .terminal:
            // The times are what a glance looks for: when the line is too wide, the step's description gives way.
            let times = " · \(elapsed) (run \(run)) · \(remaining)"
            let room = Self.terminalColumns - 1 - times.count
            let fitted = head.count <= room ? head : String(head.prefix(max(0, room - 1))) + "…"
            write("\r" + fitted + times + "\u{1B}[K")
            state.lineShown = true
        case .lines:
            write("# progress: \(head) · \(elapsed) elapsed (run \(run)) · \(remaining)\n")
        case .off:
            return
        }
        state.lastPrinted = now
    }

    private func write(_ text: String) { FileHandle.standardError.write(Data(text.utf8)) }

    private func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    /// `0:07`, `12:40`, `1:02:03`.
    static func clock(_ seconds: Double) -> String {
        let total = seconds.isFinite ? max(0, Int(seconds.rounded())) : 0
        let (hours, minutes, rest) = (total / 3600, total / 60 % 60, total % 60)
        return hours > 0 ? String(format: "%d:%02d:%02d", hours, minutes, rest) : String(format: "%d:%02d", minutes, rest)
    }

    /// A knee's step: `4000/s, step 4 of 15 (1000-64000)`; the whole list when it is short.
    static func kneeStep(_ rate: Double, index: Int, of rates: [Double]) -> String {
        let names = rates.map { String(format: "%g", $0) }
        let list = names.count <= 5 ? names.joined(separator: ",") : "\(names.first ?? "")-\(names.last ?? "")"
        return "\(names[index])/s, step \(index + 1) of \(rates.count) (\(list))"
    }
}
