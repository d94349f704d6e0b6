/// Every user-facing message, in Japanese (the seed article's wording where it has one) and English.
enum Message: Sendable {
    case sessionIDMissing
    case sessionIDRequired
    case sessionIDMalformed
    case sessionInvalid
    case sessionNotFound
    case sessionValid
    case nameRequired
    case nameTooLong
    case nameNotText
    case phoneRequired
    case phoneTooLong
    case phoneNotText
    case fieldHasControlCharacters
    case submitted
    case tooManyRequests
    case readerKeyRequired
    case alreadySubmitted
    case malformedJSON
    case bodyNotObject
    case unsupportedMediaType
    case bodyTooLarge
    case notFound
    case methodNotAllowed
    case serverError
    case serviceUnavailable
    case nameCharacterTooComplex
    case phoneInvalidFormat
    case phoneTooFewDigits
    case crossSiteRequest
    case malformedRequest
    case headersTooLarge
    case httpVersionNotSupported
    case transferCodingNotImplemented
    case requestTimeout
    case idempotencyKeyInvalid
    case idempotencyKeyReused
    case alreadyClaimed
    case qrStale
    case phoneKeyRequired
    case cancelReasonInvalid
    // A configured form's fields (`form.fields`), named by their labels.
    case fieldRequired(FormSchema.Labels)
    case fieldTooLong(FormSchema.Labels, maximum: Int)
    case fieldNotText(FormSchema.Labels)
    case fieldNotBoolean(FormSchema.Labels)
    case fieldMustBeChecked(FormSchema.Labels)
    case fieldNotAnOption(FormSchema.Labels)
    case fieldInvalidEmail(FormSchema.Labels)
    case fieldNotANumber(FormSchema.Labels)
    case fieldInvalidPhone(FormSchema.Labels)
    case fieldCharacterTooComplex(FormSchema.Labels)
    case fieldPatternMismatch(FormSchema.Labels)
    case fieldUnknown
    case opsTokenRequired

    func text(in language: Language) -> String {
        switch language {
        case .japanese: japanese
        case .english: english
        }
    }

    private var japanese: String {
        switch self {
        case .sessionIDMissing: "セッションIDが指定されていません"
        case .sessionIDRequired: "セッションIDが必要です"
        case .sessionIDMalformed: "セッションIDの形式が正しくありません"
        // The article's validate-session answer, word for word.
        case .sessionInvalid: "このセッションは無効です。QRコード画面が更新された可能性があります。"
        case .sessionNotFound: "セッションが見つからないか、有効期限が切れています"
        case .sessionValid: "セッションは有効です"
        case .nameRequired: "お名前を入力してください"
        case .nameTooLong: "お名前は\(SubmissionRules.maximumNameLength)文字以内で入力してください"
        case .nameNotText: "お名前は文字列で入力してください"
        case .phoneRequired: "電話番号を入力してください"
        case .phoneTooLong: "電話番号は\(SubmissionRules.maximumPhoneLength)文字以内で入力してください"
        case .phoneNotText: "電話番号は文字列で入力してください"
        case .fieldHasControlCharacters: "使用できない文字が含まれています"
        case .submitted: "送信が完了しました"
        case .tooManyRequests: "リクエストが多すぎます。しばらくしてから再度お試しください"
        case .readerKeyRequired: "このセッションを表示する権限がありません"
        case .alreadyClaimed: "このQRコードは別の端末ですでに使われています。"
        case .qrStale: "このQRコードは古くなっています。PCに表示されている最新のQRコードを読み取ってください。"
        case .phoneKeyRequired: "このセッションに接続した端末からのみ利用できます。"
        case .cancelReasonInvalid: "reason には not-my-phone だけを指定できます"
        case .fieldRequired(let label): "「\(label.japanese)」を入力してください"
        case .fieldTooLong(let label, let maximum): "「\(label.japanese)」は\(maximum)文字以内で入力してください"
        case .fieldNotText(let label): "「\(label.japanese)」は文字列で入力してください"
        case .fieldNotBoolean(let label): "「\(label.japanese)」は true か false で指定してください"
        case .fieldMustBeChecked(let label): "「\(label.japanese)」にチェックを入れてください"
        case .fieldNotAnOption(let label): "「\(label.japanese)」は選択肢から選んでください"
        case .fieldInvalidEmail(let label): "「\(label.japanese)」はメールアドレスの形式で入力してください"
        case .fieldNotANumber(let label): "「\(label.japanese)」は数値で入力してください"
        case .fieldInvalidPhone(let label): "「\(label.japanese)」は電話番号の形式で入力してください"
        case .fieldCharacterTooComplex(let label): "「\(label.japanese)」に、記号や結合文字を重ねすぎた文字が含まれています"
        case .fieldPatternMismatch(let label): "「\(label.japanese)」の形式が正しくありません"
        case .fieldUnknown: "このフォームにない項目です"
        case .opsTokenRequired: "運用ページのトークンが必要です（正しくありません）"
        case .alreadySubmitted: "このセッションは既に送信済みです"
        case .malformedJSON: "リクエストの形式が正しくありません（JSONとして読み取れません）"
        case .bodyNotObject: "リクエスト本文はJSONオブジェクトで送信してください"
        case .unsupportedMediaType: "Content-Type は application/json で送信してください"
        case .bodyTooLarge: "リクエストが大きすぎます"
        case .notFound: "ページが見つかりません"
        case .methodNotAllowed: "このメソッドは使用できません"
        case .serverError: "サーバーエラーが発生しました"
        case .serviceUnavailable: "サービスが一時的に利用できません。しばらくしてから再度お試しください"
        case .nameCharacterTooComplex: "お名前に、記号や結合文字を重ねすぎた文字が含まれています"
        case .phoneInvalidFormat: "電話番号は数字で入力してください（先頭の+と、スペース・-・(・)・. は使えます）"
        case .phoneTooFewDigits: "電話番号は\(SubmissionRules.minimumPhoneDigits)桁以上の数字で入力してください"
        case .crossSiteRequest: "他のサイトからのリクエストは受け付けていません"
        case .malformedRequest: "リクエストの形式が正しくありません（HTTP/1.1 として読み取れません）"
        case .headersTooLarge: "リクエストヘッダーが大きすぎます"
        case .httpVersionNotSupported: "HTTP/1.0 と HTTP/1.1 のみ対応しています"
        case .transferCodingNotImplemented: "転送コーディングは chunked のみ対応しています"
        case .requestTimeout: "リクエストが時間内に届きませんでした"
        case .idempotencyKeyInvalid: "Idempotency-Key は1〜64文字の英数字記号で指定してください"
        case .idempotencyKeyReused: "この Idempotency-Key は別の内容の送信に使われています"
        }
    }

    private var english: String {
        switch self {
        case .sessionIDMissing: "No session ID was given."
        case .sessionIDRequired: "A session ID is required."
        case .sessionIDMalformed: "The session ID is not in a valid format."
        case .sessionInvalid: "This session is invalid. The QR code screen may have been refreshed."
        case .sessionNotFound: "The session was not found or has expired."
        case .sessionValid: "The session is valid."
        case .nameRequired: "Please enter your name."
        case .nameTooLong: "Your name must be at most \(SubmissionRules.maximumNameLength) characters."
        case .nameNotText: "Your name must be text."
        case .phoneRequired: "Please enter your phone number."
        case .phoneTooLong: "Your phone number must be at most \(SubmissionRules.maximumPhoneLength) characters."
        case .phoneNotText: "Your phone number must be text."
        case .fieldHasControlCharacters: "The value contains characters that are not allowed."
        case .submitted: "Submitted."
        case .tooManyRequests: "Too many requests. Please wait a moment and try again."
        case .readerKeyRequired: "Only the device that opened this session can read it."
        case .alreadyClaimed: "This QR code has already been used on another device."
        case .qrStale: "This QR code is out of date. Scan the code the PC shows now."
        case .phoneKeyRequired: "Only the device that opened this session from its QR code can use this."
        case .cancelReasonInvalid: "The only reason accepted is not-my-phone."
        case .fieldRequired(let label): "Please enter \(label.english)."
        case .fieldTooLong(let label, let maximum): "\(label.english) must be at most \(maximum) characters."
        case .fieldNotText(let label): "\(label.english) must be text."
        case .fieldNotBoolean(let label): "\(label.english) must be true or false."
        case .fieldMustBeChecked(let label): "Please check \(label.english)."
        case .fieldNotAnOption(let label): "Please choose \(label.english) from the list."
        case .fieldInvalidEmail(let label): "\(label.english) must be an e-mail address."
        case .fieldNotANumber(let label): "\(label.english) must be a number."
        case .fieldInvalidPhone(let label): "\(label.english) must be a phone number."
        case .fieldCharacterTooComplex(let label): "\(label.english) contains a character built from too many marks or symbols."
        case .fieldPatternMismatch(let label): "\(label.english) is not in the expected format."
        case .fieldUnknown: "This form has no such field."
        case .opsTokenRequired: "The operators' token is missing or wrong."
        case .alreadySubmitted: "This session has already been submitted."
        case .malformedJSON: "The request body is not valid JSON."
        case .bodyNotObject: "The request body must be a JSON object."
        case .unsupportedMediaType: "Send the request body as application/json."
        case .bodyTooLarge: "The request body is too large."
        case .notFound: "Not found."
        case .methodNotAllowed: "This method is not allowed here."
        case .serverError: "A server error occurred."
        case .serviceUnavailable: "The service is temporarily unavailable. Please try again shortly."
        case .nameCharacterTooComplex: "Your name contains a character built from too many marks or symbols."
        case .phoneInvalidFormat: "Enter your phone number in digits (a leading +, spaces and - ( ) . are allowed)."
        case .phoneTooFewDigits: "Your phone number must have at least \(SubmissionRules.minimumPhoneDigits) digits."
        case .crossSiteRequest: "Requests from other sites are not accepted."
        case .malformedRequest: "The request is not valid HTTP/1.1."
        case .headersTooLarge: "Request headers are too large."
        case .httpVersionNotSupported: "Only HTTP/1.0 and HTTP/1.1 are served."
        case .transferCodingNotImplemented: "Only the chunked transfer coding is accepted."
        case .requestTimeout: "The request did not arrive in time."
        case .idempotencyKeyInvalid: "The Idempotency-Key must be 1 to 64 visible ASCII characters."
        case .idempotencyKeyReused: "This Idempotency-Key was used for a different submission."
        }
    }
}
