//! Which ClickHouse errors are worth retrying, as Vector's `ClickhouseRetryLogic` decides:
//! the network, a timeout, or a server exception that ClickHouse itself lists as retryable
//! (an overload, a read-only replica, too many parts) will pass; a missing table or column,
//! a type mismatch, a syntax or an access error will not, and retrying those forever would
//! make a bad migration look like an outage.

/// ClickHouse's retryable exception codes (its own list, `X-ClickHouse-Exception-Retryable`),
/// and MEMORY_LIMIT_EXCEEDED, which passes once the server has memory again.
const RETRYABLE_CODES: [u32; 15] = [
    3,    // UNEXPECTED_END_OF_FILE
    159,  // TIMEOUT_EXCEEDED
    164,  // READONLY
    202,  // TOO_MANY_SIMULTANEOUS_QUERIES
    203,  // NO_FREE_CONNECTION
    209,  // SOCKET_TIMEOUT
    210,  // NETWORK_ERROR
    241,  // MEMORY_LIMIT_EXCEEDED
    242,  // TABLE_IS_READ_ONLY
    252,  // TOO_MANY_PARTS
    285,  // TOO_FEW_LIVE_REPLICAS
    319,  // UNKNOWN_STATUS_OF_INSERT
    425,  // SYSTEM_ERROR
    999,  // KEEPER_EXCEPTION
    1002, // UNKNOWN_EXCEPTION
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Wait and insert again: ClickHouse is down, slow or overloaded.
    Transient,
    /// Inserting again cannot succeed until the operator acts.
    Permanent,
}

/// The exception code in a ClickHouse error text (`Code: 60. DB::Exception: ...`).
pub fn exception_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + "Code: ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// What an insert's error means.
pub fn classify(error: &anyhow::Error) -> Failure {
    use clickhouse::error::Error;
    match error.downcast_ref::<Error>() {
        Some(Error::Network(_) | Error::TimedOut) => Failure::Transient,
        // An answer without an exception code comes from something in between (a proxy's
        // 502), not from ClickHouse's judgement of the insert.
        Some(Error::BadResponse(text)) => match exception_code(text) {
            Some(code) if !RETRYABLE_CODES.contains(&code) => Failure::Permanent,
            _ => Failure::Transient,
        },
        // The rows do not fit the table as this sink knows it.
        Some(Error::SchemaMismatch(_) | Error::NotEnoughData | Error::InvalidColumnsHeader(_)) => {
            Failure::Permanent
        }
        // Anything else (an I/O error not wrapped as network, a new variant) is retried: a
        // wrong guess costs a wait, not data.
        _ => Failure::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(text: &str) -> anyhow::Error {
        clickhouse::error::Error::BadResponse(text.into()).into()
    }

    #[test]
    fn exceptions_are_classified_by_their_code() {
        let missing = "Code: 60. DB::Exception: Table trackledger.ledger does not exist. (UNKNOWN_TABLE) (version 26.9.2.1)";
        assert_eq!(exception_code(missing), Some(60));
        assert_eq!(classify(&bad(missing)), Failure::Permanent);
        assert_eq!(
            classify(&bad("Code: 16. DB::Exception: No such column flags in table ledger. (NO_SUCH_COLUMN_IN_TABLE)")),
            Failure::Permanent
        );
        assert_eq!(
            classify(&bad(
                "Code: 252. DB::Exception: Too many parts (300). (TOO_MANY_PARTS)"
            )),
            Failure::Transient
        );
        assert_eq!(
            classify(&bad("<html>502 Bad Gateway</html>")),
            Failure::Transient
        );
        assert_eq!(
            classify(&clickhouse::error::Error::TimedOut.into()),
            Failure::Transient
        );
        assert_eq!(
            classify(&clickhouse::error::Error::SchemaMismatch("x".into()).into()),
            Failure::Permanent
        );
        assert_eq!(exception_code("Code: x"), None);
    }
}
