import NIOCore
import NIOHTTP1

/// Answers requests that cannot be parsed: 431 when the head is too large, 400 otherwise, as a small JSON body with
/// `Connection: close` (the decoder cannot recover, so the connection ends). Replaces NIO's bodiless 400.
final class HTTPProtocolErrorHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var responseInProgress = false
    private let extraHeaders: [(String, String)]

    init(extraHeaders: [(String, String)] = []) {
        self.extraHeaders = extraHeaders
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        // A response already begun cannot be replaced; the connection just closes.
        if !responseInProgress {
            let (status, code, message): (HTTPResponseStatus, String, String) =
                switch parserError {
                case .headerOverflow:
                    (.requestHeaderFieldsTooLarge, "headers_too_large", "Request headers are too large.")
                default:
                    (.badRequest, "malformed_request", "The request is not valid HTTP/1.1.")
                }
            let body = ByteBuffer(string: #"{"code":"\#(code)","message":"\#(message)","success":false}"#)
            let headers = HTTPHeaders([
                ("Connection", "close"),
                ("Content-Type", "application/json; charset=utf-8"),
                ("Content-Length", String(body.readableBytes)),
            ] + extraHeaders)
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in loopBound.value.close(promise: nil) }
        }
        context.fireErrorCaught(error)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head) where head.status.code >= 200: responseInProgress = true
        case .end: responseInProgress = false
        default: break
        }
        context.write(data, promise: promise)
    }
}
