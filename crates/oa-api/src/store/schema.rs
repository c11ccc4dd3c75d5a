//! The tables both backends create, written once: the column types the dialects spell
//! differently stand as placeholders (`{real}`...) that `schema!` replaces at compile time
//! with a backend's [`ColumnTypes`]. Each backend groups these into its own migrations.

/// A backend's spelling of each placeholder: (placeholder, replacement).
pub(crate) type ColumnTypes = &'static [(&'static str, &'static str)];

/// SQLite's column types.
pub(crate) const SQLITE_TYPES: ColumnTypes = &[
    ("{real}", "REAL"),
    ("{bigint}", "INTEGER"),
    ("{bytes}", "BLOB"),
    // The rowid itself: assigned on insert.
    ("{row_id}", "INTEGER PRIMARY KEY"),
    // A rowid never used again, also after the newest row is deleted.
    ("{sequence}", "INTEGER PRIMARY KEY AUTOINCREMENT"),
    ("{without_rowid}", " WITHOUT ROWID"),
];

/// PostgreSQL's column types.
pub(crate) const POSTGRES_TYPES: ColumnTypes = &[
    ("{real}", "DOUBLE PRECISION"),
    ("{bigint}", "BIGINT"),
    ("{bytes}", "BYTEA"),
    ("{row_id}", "BIGSERIAL PRIMARY KEY"),
    ("{sequence}", "BIGSERIAL PRIMARY KEY"),
    ("{without_rowid}", ""),
];

/// The placeholder of `types` that starts at byte `at` of `text` and its replacement, if one
/// does. A `{` that starts none is a mistake in the schema text: the build fails.
const fn placeholder_at(
    text: &[u8],
    at: usize,
    types: ColumnTypes,
) -> Option<(usize, &'static str)> {
    if text[at] != b'{' {
        return None;
    }
    let mut index = 0;
    while index < types.len() {
        let (placeholder, replacement) = types[index];
        let placeholder = placeholder.as_bytes();
        let mut matched = 0;
        while matched < placeholder.len()
            && at + matched < text.len()
            && text[at + matched] == placeholder[matched]
        {
            matched += 1;
        }
        if matched == placeholder.len() {
            return Some((placeholder.len(), replacement));
        }
        index += 1;
    }
    panic!("the schema text has an unknown placeholder");
}

/// The length of `text` with the placeholders of `types` replaced.
pub(crate) const fn rendered_len(text: &str, types: ColumnTypes) -> usize {
    let text = text.as_bytes();
    let (mut at, mut len) = (0, 0);
    while at < text.len() {
        match placeholder_at(text, at, types) {
            Some((placeholder, replacement)) => {
                at += placeholder;
                len += replacement.len();
            }
            None => {
                at += 1;
                len += 1;
            }
        }
    }
    len
}

/// `text` with the placeholders of `types` replaced (`N` is its [`rendered_len`]).
pub(crate) const fn render<const N: usize>(text: &str, types: ColumnTypes) -> [u8; N] {
    let text = text.as_bytes();
    let mut rendered = [0u8; N];
    let (mut at, mut len) = (0, 0);
    while at < text.len() {
        match placeholder_at(text, at, types) {
            Some((placeholder, replacement)) => {
                let replacement = replacement.as_bytes();
                let mut index = 0;
                while index < replacement.len() {
                    rendered[len + index] = replacement[index];
                    index += 1;
                }
                at += placeholder;
                len += replacement.len();
            }
            None => {
                rendered[len] = text[at];
                at += 1;
                len += 1;
            }
        }
    }
    rendered
}

/// The schema texts `$text`, joined, with the placeholders replaced by the column types
/// `$types`, at compile time.
macro_rules! schema {
    ($types:expr, $($text:expr),+ $(,)?) => {{
        const TEXT: &str = concat!($($text),+);
        const BYTES: [u8; $crate::store::schema::rendered_len(TEXT, $types)] =
            $crate::store::schema::render(TEXT, $types);
        const RENDERED: &str = match ::std::str::from_utf8(&BYTES) {
            Ok(text) => text,
            Err(_) => panic!("schema text is not UTF-8"),
        };
        RENDERED
    }};
}

/// API keys, settings and the order engine's rows (orders, trades, positions, funds, the
/// order log and the outbox).
macro_rules! engine_tables {
    () => {
        r#"
CREATE TABLE api_keys (
    id          {row_id},
    user_id     TEXT NOT NULL REFERENCES users(user_id),
    key_id      TEXT NOT NULL UNIQUE,
    key_hash    TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);
CREATE INDEX api_keys_user ON api_keys(user_id);
CREATE TABLE settings (
    user_id     TEXT NOT NULL,
    name        TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (user_id, name)
);
CREATE TABLE orders (
    orderid             TEXT PRIMARY KEY,
    book                TEXT NOT NULL,
    user_id             TEXT NOT NULL,
    strategy            TEXT NOT NULL,
    exchange            TEXT NOT NULL,
    symbol              TEXT NOT NULL,
    action              TEXT NOT NULL,
    quantity            {real} NOT NULL,
    pricetype           TEXT NOT NULL,
    product             TEXT NOT NULL,
    price               {real} NOT NULL,
    trigger_price       {real} NOT NULL,
    disclosed_quantity  {real} NOT NULL,
    status              TEXT NOT NULL,
    filled_quantity     {real} NOT NULL,
    average_price       {real} NOT NULL,
    blocked_margin      {real} NOT NULL,
    rejection_reason    TEXT NOT NULL,
    created_ms          {bigint} NOT NULL,
    updated_ms          {bigint} NOT NULL
);
CREATE INDEX orders_user ON orders(book, user_id);
CREATE TABLE trades (
    tradeid     {bigint} PRIMARY KEY,
    orderid     TEXT NOT NULL,
    book        TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    exchange    TEXT NOT NULL,
    symbol      TEXT NOT NULL,
    action      TEXT NOT NULL,
    product     TEXT NOT NULL,
    quantity    {real} NOT NULL,
    price       {real} NOT NULL,
    created_ms  {bigint} NOT NULL
);
CREATE TABLE positions (
    book            TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    exchange        TEXT NOT NULL,
    symbol          TEXT NOT NULL,
    product         TEXT NOT NULL,
    quantity        {real} NOT NULL,
    average_price   {real} NOT NULL,
    realized_pnl    {real} NOT NULL,
    margin          {real} NOT NULL,
    PRIMARY KEY (book, user_id, exchange, symbol, product)
);
CREATE TABLE funds (
    book            TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    starting        {real} NOT NULL,
    cash            {real} NOT NULL,
    order_margin    {real} NOT NULL,
    position_margin {real} NOT NULL,
    realized_pnl    {real} NOT NULL,
    PRIMARY KEY (book, user_id)
);
CREATE TABLE order_log (
    id          {row_id},
    user_id     TEXT NOT NULL,
    mode        TEXT NOT NULL,
    api_type    TEXT NOT NULL,
    request     TEXT NOT NULL,
    response    TEXT NOT NULL,
    created_ms  {bigint} NOT NULL
);
CREATE TABLE outbox (
    seq           {row_id},
    id            TEXT NOT NULL UNIQUE,
    user_id       TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    payload       {bytes} NOT NULL,
    created_at    TEXT NOT NULL,
    delivered_at  TEXT
);
CREATE INDEX outbox_undelivered ON outbox(seq) WHERE delivered_at IS NULL;
"#
    };
}

/// Outbox rows the relay could not publish, with the reason (created by the relay's reader
/// on SQLite, by a migration on PostgreSQL).
macro_rules! outbox_quarantine_table {
    () => {
        r#"
CREATE TABLE IF NOT EXISTS outbox_quarantine (
    seq             {bigint} PRIMARY KEY,
    id              TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    payload         {bytes},
    created_at      TEXT NOT NULL,
    reason          TEXT NOT NULL,
    quarantined_at  TEXT NOT NULL
);
"#
    };
}

/// The ESB consumer's processed commands and offsets.
macro_rules! esb_tables {
    () => {
        r#"
CREATE TABLE esb_commands (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    status        TEXT NOT NULL,
    response      TEXT NOT NULL,
    topic         TEXT NOT NULL,
    partition     INTEGER NOT NULL,
    "offset"      {bigint} NOT NULL,
    created_at    TEXT NOT NULL,
    finished_at   TEXT
);
CREATE TABLE esb_offsets (
    consumer_group  TEXT NOT NULL,
    topic           TEXT NOT NULL,
    partition       INTEGER NOT NULL,
    next_offset     {bigint} NOT NULL,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition)
);
"#
    };
}

/// Key rotations and revocations, in order: a running server polls the newest `seq` to end
/// the sessions of keys changed by another process (`oa-server apikey ...`).
macro_rules! key_events_table {
    () => {
        r#"
CREATE TABLE key_events (
    seq         {sequence},
    user_id     TEXT NOT NULL,
    action      TEXT NOT NULL,
    at          TEXT NOT NULL
);
"#
    };
}

/// Idempotency-Key records: the first response to a keyed request, written in the same
/// transaction as the change it made.
macro_rules! idempotency_table {
    () => {
        r#"
CREATE TABLE idempotency_keys (
    user_id       TEXT NOT NULL,
    idem_key      TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    status        INTEGER NOT NULL,
    response      TEXT NOT NULL,
    created_ms    {bigint} NOT NULL,
    PRIMARY KEY (user_id, idem_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys(created_ms);
"#
    };
}

/// A table of bars (`bars` and its rollups, see [`super::BarTable`]), with its index on
/// `time`.
macro_rules! bars_table {
    ($table:literal) => {
        concat!(
            "
CREATE TABLE ",
            $table,
            " (
    exchange    TEXT NOT NULL,
    symbol      TEXT NOT NULL,
    time        {bigint} NOT NULL,
    open        {real} NOT NULL,
    high        {real} NOT NULL,
    low         {real} NOT NULL,
    close       {real} NOT NULL,
    volume      {real} NOT NULL,
    oi          {real} NOT NULL,
    PRIMARY KEY (exchange, symbol, time)
){without_rowid};
CREATE INDEX ",
            $table,
            "_time ON ",
            $table,
            "(time);
"
        )
    };
}

/// The hourly and daily rollups of `bars`, filled from the bars stored so far.
macro_rules! rollup_tables {
    () => {
        concat!(
            bars_table!("bars_hour"),
            bars_table!("bars_day"),
            rollup_insert!("bars_hour", HOUR_BUCKET, ""),
            ";",
            rollup_insert!("bars_day", DAY_BUCKET, ""),
            ";"
        )
    };
}

/// Packed hours of 1-minute bars (see [`super::packs`]), filled from the bars stored so far
/// by each backend's `pack_every_bar` in the same transaction.
macro_rules! packed_bars_table {
    () => {
        r#"
CREATE TABLE bars_packed (
    exchange    TEXT NOT NULL,
    symbol      TEXT NOT NULL,
    time        {bigint} NOT NULL,
    data        {bytes} NOT NULL,
    PRIMARY KEY (exchange, symbol, time)
);
CREATE INDEX bars_packed_time ON bars_packed(time);
"#
    };
}

#[cfg(test)]
mod tests {
    use super::{POSTGRES_TYPES, SQLITE_TYPES};

    #[test]
    fn placeholders_become_each_backends_column_types() {
        macro_rules! table {
            () => {
                "CREATE TABLE t (id {row_id}, price {real}, at {bigint}){without_rowid};"
            };
        }
        assert_eq!(
            schema!(SQLITE_TYPES, table!()),
            "CREATE TABLE t (id INTEGER PRIMARY KEY, price REAL, at INTEGER) WITHOUT ROWID;"
        );
        assert_eq!(
            schema!(POSTGRES_TYPES, table!()),
            "CREATE TABLE t (id BIGSERIAL PRIMARY KEY, price DOUBLE PRECISION, at BIGINT);"
        );
    }
}
