/// One row of ``TandemConfiguration/settings``: a key, the property it fills, how its value is read, checked and
/// shown. Made by ``integer(_:_:in:check:)``, ``string(_:_:shown:normalize:check:)`` and ``choice(_:_:)``.
struct ConfigurationSetting {
    typealias Check<Value> = (Value, TandemConfiguration) -> String?

    let key: String
    /// Reads the value (command line, environment, file, else the property's default) into the configuration.
    let read: (inout ConfigurationReader, inout TandemConfiguration) throws(ConfigurationError) -> Void
    /// Checks (and normalizes) the value once every setting is read: some checks involve two settings.
    let check: (inout TandemConfiguration, ConfigurationReader) throws(ConfigurationError) -> Void
    /// The value as `check-config` shows it (secrets masked).
    let shown: (TandemConfiguration) -> String
    let isEqual: (TandemConfiguration, TandemConfiguration) -> Bool

    /// An integer within `range`; `check` returns what is expected when the value is wrong in context, else nil.
    static func integer(
        _ key: String, _ property: WritableKeyPath<TandemConfiguration, Int>, in range: ClosedRange<Int>, check: Check<Int>? = nil
    ) -> Self {
        Self(
            key: key,
            read: { reader, configuration throws(ConfigurationError) in
                configuration[keyPath: property] = try reader.integer(key, default: configuration[keyPath: property], in: range)
            },
            check: { configuration, reader throws(ConfigurationError) in
                let value = configuration[keyPath: property]
                if let expected = check?(value, configuration) { throw reader.invalid(key, expected: expected, value: String(value)) }
            },
            shown: { String($0[keyPath: property]) },
            isEqual: { $0[keyPath: property] == $1[keyPath: property] })
    }

    /// A string; `normalize` tidies an accepted value (after `check`), `shown` masks what must not be printed (in
    /// `check-config` and in the error for a wrong value).
    static func string(
        _ key: String, _ property: WritableKeyPath<TandemConfiguration, String>, shown: ((String) -> String)? = nil,
        normalize: ((String) -> String)? = nil, check: Check<String>? = nil
    ) -> Self {
        Self(
            key: key,
            read: { reader, configuration throws(ConfigurationError) in
                configuration[keyPath: property] = try reader.string(key, default: configuration[keyPath: property])
            },
            check: { configuration, reader throws(ConfigurationError) in
                let value = configuration[keyPath: property]
                if let expected = check?(value, configuration) {
                    throw reader.invalid(key, expected: expected, value: shown?(value) ?? value)
                }
                if let normalize { configuration[keyPath: property] = normalize(value) }
            },
            shown: { configuration in shown.map { $0(configuration[keyPath: property]) } ?? configuration[keyPath: property] },
            isEqual: { $0[keyPath: property] == $1[keyPath: property] })
    }

    /// One of a fixed set of names (an enum's raw values).
    static func choice<Choice: RawRepresentable & CaseIterable & Equatable>(
        _ key: String, _ property: WritableKeyPath<TandemConfiguration, Choice>
    ) -> Self where Choice.RawValue == String {
        Self(
            key: key,
            read: { reader, configuration throws(ConfigurationError) in
                configuration[keyPath: property] = try reader.choice(key, default: configuration[keyPath: property])
            },
            check: { _, _ in },
            shown: { $0[keyPath: property].rawValue },
            isEqual: { $0[keyPath: property] == $1[keyPath: property] })
    }

    /// The phone's form (`form.fields`, a JSON array of fields): refused with the field that is wrong and, from the
    /// file, its line.
    static func form(_ key: String, _ property: WritableKeyPath<TandemConfiguration, FormSchema>) -> Self {
        Self(
            key: key,
            read: { reader, configuration throws(ConfigurationError) in
                switch FormSchema.parse(try reader.json(key)) {
                case .success(let form): configuration[keyPath: property] = form
                case .failure(let error):
                    throw reader.invalid(key, problem: error.description, entryName: error.field?.name, occurrence: error.occurrence)
                }
            },
            check: { _, _ in },
            shown: { configuration in
                let form = configuration[keyPath: property]
                return form.isArticleForm ? "the article's (name, phone)" : form.fields.map { "\($0.name) (\($0.type.rawValue))" }.joined(separator: ", ")
            },
            isEqual: { $0[keyPath: property] == $1[keyPath: property] })
    }
}
