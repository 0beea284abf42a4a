//! Every limit a configuration is held to, in one place. docs/configuration.md
//! ("Limits") lists each of them and tests/limits.rs checks each one at the
//! limit and one past it (and that the docs table shows these values).

/// Most rules in one configuration, the built-in host rules included
/// (a preset counts as one rule).
pub const MAX_RULES: usize = 100_000;
/// Deepest nesting of `all` / `any` / `not`.
pub const MAX_DEPTH: usize = 32;
/// Longest single pattern (each entry of an `in` list is one pattern).
pub const MAX_PATTERN_LEN: usize = 8 * 1024;
/// Most bytes of literal and regex patterns in one configuration.
pub const MAX_PATTERN_BYTES: usize = 16 * 1024 * 1024;
/// Compiled regex program size (each regex, and each subject's set).
pub const REGEX_SIZE_LIMIT: usize = 2 * 1024 * 1024;
/// Most buckets (`slots`) one rate limit may keep.
pub const MAX_SLOTS: u32 = 1 << 20;
/// Longest rule name (and `stats.prefix`); names end up in logs, filter
/// state and stats.
pub const MAX_RULE_NAME: usize = 64;
/// Most drop log lines per second (`log.max_per_second`).
pub const MAX_LOG_PER_SECOND: u32 = 100_000;
/// Most user-agent bytes in a drop log line (`log.user_agent_max`).
pub const MAX_USER_AGENT_LOGGED: u32 = 8192;
/// Longest host name accepted (RFC 1035: 253 characters without the root
/// dot); a longer Host is `invalid`, a longer allowlist entry an error.
pub const MAX_HOST_NAME: usize = 253;
