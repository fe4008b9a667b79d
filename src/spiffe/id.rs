//! SPIFFE IDs and trust domain names, parsed strictly per the SPIFFE-ID standard
//! (<https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md>).
//!
//! # Contract
//!
//! Guarantees: a value of [`SpiffeId`] or [`TrustDomain`] can only exist if its text
//! satisfies every rule below, so code holding one never needs to re-validate it.
//!
//! * scheme is exactly `spiffe://` (lowercase, no normalisation is attempted);
//! * trust domain is non-empty, at most 255 bytes, and made only of `a-z 0-9 . - _`
//!   (so no port, no userinfo, no percent-encoding, no uppercase);
//! * path is empty or `/seg(/seg)*` where every segment is non-empty, is not `.` or `..`,
//!   and is made only of `A-Z a-z 0-9 . - _`; no trailing `/`, no query, no fragment;
//! * the whole ID is at most 2048 bytes.
//!
//! Does not: resolve or normalise anything (an ID that a lenient parser would "fix",
//! e.g. `SPIFFE://Example.org/a/`, is rejected, not rewritten); decide whether a trust
//! domain is one you trust (that is [`super::TrustBundle`]'s job).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The only accepted scheme prefix.
const SCHEME: &str = "spiffe://";
/// SPIFFE-ID §2.3: implementations must support, and should not generate, longer IDs.
pub const MAX_ID_LEN: usize = 2048;
/// SPIFFE-ID §2.3: RFC 3986 caps the host component, hence the trust domain, at 255.
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;
/// Echoed input is cut to this many characters so an error stays one readable line.
const ECHO_LIMIT: usize = 64;

/// Why a string is not a valid SPIFFE ID or trust domain name. One variant per rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    #[error("SPIFFE ID is empty: expected \"spiffe://<trust-domain>[/<path>]\"")]
    Empty,
    #[error("SPIFFE ID is {len} bytes long: expected at most {MAX_ID_LEN} bytes (SPIFFE-ID §2.3)")]
    TooLong { len: usize },
    #[error(
        "SPIFFE ID {found:?} has scheme {scheme:?} in the wrong case: expected exactly \"spiffe://\" (lowercase)"
    )]
    SchemeNotLowercase { found: String, scheme: String },
    #[error(
        "SPIFFE ID {found:?} does not start with \"spiffe://\": expected \"spiffe://<trust-domain>[/<path>]\""
    )]
    WrongScheme { found: String },
    #[error(
        "SPIFFE ID {found:?} has a query component: expected no '?' (SPIFFE IDs carry no query)"
    )]
    Query { found: String },
    #[error(
        "SPIFFE ID {found:?} has a fragment component: expected no '#' (SPIFFE IDs carry no fragment)"
    )]
    Fragment { found: String },
    #[error(
        "SPIFFE ID {found:?} contains percent-encoding: expected only literal characters, no '%'"
    )]
    PercentEncoded { found: String },
    #[error("trust domain is empty: expected a name such as \"example.org\" after \"spiffe://\"")]
    EmptyTrustDomain,
    #[error("trust domain is {len} bytes long: expected at most {MAX_TRUST_DOMAIN_LEN} bytes")]
    TrustDomainTooLong { len: usize },
    #[error(
        "trust domain {td:?} is a URI: expected a bare name such as \"example.org\" (use SpiffeId::parse for spiffe:// IDs)"
    )]
    TrustDomainIsUri { td: String },
    #[error("trust domain {td:?} has userinfo ('@'): expected a bare host name with no userinfo")]
    TrustDomainHasUserinfo { td: String },
    #[error("trust domain {td:?} has a port (':'): expected a bare host name with no port")]
    TrustDomainHasPort { td: String },
    #[error(
        "trust domain {td:?} has character {ch:?}: expected lowercase letters, digits, '.', '-', '_'"
    )]
    TrustDomainBadChar { td: String, ch: char },
    #[error("path {path:?} ends with '/': expected no trailing slash")]
    TrailingSlash { path: String },
    #[error("path segment {index} is empty (\"//\"): segments must not be empty")]
    EmptySegment { index: usize },
    #[error("path segment {index} is {segment:?}: segments must not be \".\" or \"..\"")]
    DotSegment { index: usize, segment: String },
    #[error(
        "path segment {index} ({segment:?}) has character {ch:?}: expected letters, digits, '.', '-', '_'"
    )]
    PathBadChar {
        index: usize,
        segment: String,
        ch: char,
    },
}

/// A SPIFFE trust domain name, e.g. `tradepulse` or `soma-agent-hub.local`.
#[derive(Clone, PartialEq, Eq, Hash, Ord, PartialOrd, Debug)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Parses a bare trust domain name (no scheme): `TrustDomain::parse("example.org")`.
    pub fn parse(name: &str) -> Result<Self, SpiffeIdError> {
        // Catch "spiffe://x" up front: otherwise the ':' would be misreported as a port.
        if name.contains("://") {
            return Err(SpiffeIdError::TrustDomainIsUri { td: echo(name) });
        }
        validate_trust_domain(name)?;
        Ok(Self(name.to_owned()))
    }

    /// The trust domain name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SPIFFE ID of the trust domain itself: `spiffe://<name>` (no path).
    pub fn id(&self) -> SpiffeId {
        SpiffeId {
            trust_domain: self.clone(),
            path: String::new(),
        }
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A validated SPIFFE ID: `spiffe://<trust-domain>[/<segment>...]`.
///
/// Ordering is by trust domain, then path, which keeps IDs of one trust domain together.
#[derive(Clone, PartialEq, Eq, Hash, Ord, PartialOrd, Debug)]
pub struct SpiffeId {
    trust_domain: TrustDomain,
    /// Empty, or starts with '/'; already validated.
    path: String,
}

impl SpiffeId {
    /// Parses and validates a SPIFFE ID. See the module docs for the rules.
    pub fn parse(id: &str) -> Result<Self, SpiffeIdError> {
        check_whole_id(id)?;
        let rest = strip_scheme(id)?;
        // The authority ends at the first '/'; '?' and '#' were rejected above.
        let (td, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        validate_trust_domain(td)?;
        validate_path(path)?;
        Ok(Self {
            trust_domain: TrustDomain(td.to_owned()),
            path: path.to_owned(),
        })
    }

    /// Builds `spiffe://<td>/<seg1>/<seg2>...`, validating every segment.
    /// `from_segments(&td, &[])` yields the trust domain ID.
    pub fn from_segments(td: &TrustDomain, segments: &[&str]) -> Result<Self, SpiffeIdError> {
        // Validate segments one by one rather than the joined path, so that a segment
        // containing '/' is rejected instead of silently becoming two segments.
        for (i, segment) in segments.iter().enumerate() {
            validate_segment(i + 1, segment)?;
        }
        let path: String = segments.iter().flat_map(|s| ["/", s]).collect();
        let id = Self {
            trust_domain: td.clone(),
            path,
        };
        let len = id.len();
        if len > MAX_ID_LEN {
            return Err(SpiffeIdError::TooLong { len });
        }
        Ok(id)
    }

    /// The trust domain this ID belongs to.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The path, empty for a trust domain ID, otherwise starting with `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The path segments, in order (empty for a trust domain ID).
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        // The path starts with '/', so the first split piece is always "" and skipped.
        self.path.split('/').skip(1)
    }

    /// True when the ID has no path, i.e. names the trust domain itself.
    pub fn is_trust_domain_id(&self) -> bool {
        self.path.is_empty()
    }

    /// True when this ID belongs to `td`.
    pub fn is_member_of(&self, td: &TrustDomain) -> bool {
        &self.trust_domain == td
    }

    fn len(&self) -> usize {
        SCHEME.len() + self.trust_domain.0.len() + self.path.len()
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}{}", self.trust_domain, self.path)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for SpiffeId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SpiffeId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for TrustDomain {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TrustDomain {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Rules that concern the whole string, checked before splitting so that characters
/// that would confuse the split ('?', '#', '%') get their own specific message.
fn check_whole_id(id: &str) -> Result<(), SpiffeIdError> {
    if id.is_empty() {
        return Err(SpiffeIdError::Empty);
    }
    if id.len() > MAX_ID_LEN {
        return Err(SpiffeIdError::TooLong { len: id.len() });
    }
    let found = || echo(id);
    if id.contains('#') {
        return Err(SpiffeIdError::Fragment { found: found() });
    }
    if id.contains('?') {
        return Err(SpiffeIdError::Query { found: found() });
    }
    if id.contains('%') {
        return Err(SpiffeIdError::PercentEncoded { found: found() });
    }
    Ok(())
}

/// Returns what follows `spiffe://`, telling a wrong-case scheme apart from a wrong one.
fn strip_scheme(id: &str) -> Result<&str, SpiffeIdError> {
    if let Some(rest) = id.strip_prefix(SCHEME) {
        return Ok(rest);
    }
    match id.get(..SCHEME.len()) {
        Some(prefix) if prefix.eq_ignore_ascii_case(SCHEME) => {
            Err(SpiffeIdError::SchemeNotLowercase {
                found: echo(id),
                scheme: prefix.to_owned(),
            })
        }
        _ => Err(SpiffeIdError::WrongScheme { found: echo(id) }),
    }
}

fn validate_trust_domain(td: &str) -> Result<(), SpiffeIdError> {
    if td.is_empty() {
        return Err(SpiffeIdError::EmptyTrustDomain);
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TrustDomainTooLong { len: td.len() });
    }
    // Userinfo before port: "user:pw@host" should be reported as userinfo.
    if td.contains('@') {
        return Err(SpiffeIdError::TrustDomainHasUserinfo { td: echo(td) });
    }
    if td.contains(':') {
        return Err(SpiffeIdError::TrustDomainHasPort { td: echo(td) });
    }
    if td.contains('%') {
        return Err(SpiffeIdError::PercentEncoded { found: echo(td) });
    }
    match td.chars().find(|c| !is_trust_domain_char(*c)) {
        Some(ch) => Err(SpiffeIdError::TrustDomainBadChar { td: echo(td), ch }),
        None => Ok(()),
    }
}

/// Validates a path that is either empty or starts with '/'.
fn validate_path(path: &str) -> Result<(), SpiffeIdError> {
    if path.is_empty() {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err(SpiffeIdError::TrailingSlash { path: echo(path) });
    }
    // Segment numbers are 1-based, as a human counts them in the message.
    for (i, segment) in path.split('/').skip(1).enumerate() {
        validate_segment(i + 1, segment)?;
    }
    Ok(())
}

fn validate_segment(index: usize, segment: &str) -> Result<(), SpiffeIdError> {
    if segment.is_empty() {
        return Err(SpiffeIdError::EmptySegment { index });
    }
    if segment == "." || segment == ".." {
        return Err(SpiffeIdError::DotSegment {
            index,
            segment: segment.to_owned(),
        });
    }
    if segment.contains('%') {
        return Err(SpiffeIdError::PercentEncoded {
            found: echo(segment),
        });
    }
    match segment.chars().find(|c| !is_path_char(*c)) {
        Some(ch) => Err(SpiffeIdError::PathBadChar {
            index,
            segment: echo(segment),
            ch,
        }),
        None => Ok(()),
    }
}

fn is_trust_domain_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')
}

/// Cuts echoed input so a hostile 2 KiB string does not flood an error message.
/// Control characters are escaped later by `{:?}` formatting, keeping messages one line.
fn echo(s: &str) -> String {
    if s.chars().count() <= ECHO_LIMIT {
        return s.to_owned();
    }
    let head: String = s.chars().take(ECHO_LIMIT).collect();
    format!("{head}...")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> SpiffeIdError {
        match SpiffeId::parse(s) {
            Ok(id) => panic!("{s:?} unexpectedly parsed as {id}"),
            Err(e) => e,
        }
    }

    #[test]
    fn valid_ids_parse_and_round_trip() {
        for s in [
            "spiffe://tradepulse/prod/strategy/optimizer",
            "spiffe://soma-agent-hub.local/ns/soma-agent-hub/sa/gateway-api",
            "spiffe://tradepulse",
            "spiffe://a_b.c-d9/Mixed.Case-OK_9",
        ] {
            let id = SpiffeId::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(id.to_string(), s);
            assert_eq!(s.parse::<SpiffeId>(), Ok(id));
        }
    }

    #[test]
    fn accessors_split_the_id() {
        let id = SpiffeId::parse("spiffe://tradepulse/prod/strategy/optimizer").unwrap();
        assert_eq!(id.trust_domain().as_str(), "tradepulse");
        assert_eq!(id.path(), "/prod/strategy/optimizer");
        assert_eq!(
            id.segments().collect::<Vec<_>>(),
            ["prod", "strategy", "optimizer"]
        );
        assert!(!id.is_trust_domain_id());
    }

    #[test]
    fn trust_domain_only_id_has_no_path_or_segments() {
        let id = SpiffeId::parse("spiffe://soma-agent-hub.local").unwrap();
        assert_eq!(id.path(), "");
        assert_eq!(id.segments().count(), 0);
        assert!(id.is_trust_domain_id());
        assert_eq!(id, id.trust_domain().id());
    }

    #[test]
    fn trust_domain_parse_and_id() {
        let td = TrustDomain::parse("tradepulse").unwrap();
        assert_eq!(td.id().to_string(), "spiffe://tradepulse");
        assert_eq!(
            TrustDomain::parse("Tradepulse"),
            Err(SpiffeIdError::TrustDomainBadChar {
                td: "Tradepulse".into(),
                ch: 'T'
            })
        );
        assert!(matches!(
            TrustDomain::parse("spiffe://tradepulse"),
            Err(SpiffeIdError::TrustDomainIsUri { .. })
        ));
        assert_eq!(TrustDomain::parse(""), Err(SpiffeIdError::EmptyTrustDomain));
    }

    #[test]
    fn from_segments_builds_and_validates() {
        let td = TrustDomain::parse("tradepulse").unwrap();
        let id = SpiffeId::from_segments(&td, &["prod", "strategy", "optimizer"]).unwrap();
        assert_eq!(
            id.to_string(),
            "spiffe://tradepulse/prod/strategy/optimizer"
        );
        assert_eq!(SpiffeId::from_segments(&td, &[]).unwrap(), td.id());
        assert!(matches!(
            SpiffeId::from_segments(&td, &["a", ".."]),
            Err(SpiffeIdError::DotSegment { index: 2, .. })
        ));
        // A segment must not smuggle in a separator and become two segments.
        assert!(matches!(
            SpiffeId::from_segments(&td, &["a/b"]),
            Err(SpiffeIdError::PathBadChar {
                index: 1,
                ch: '/',
                ..
            })
        ));
        assert_eq!(
            SpiffeId::from_segments(&td, &["a", ""]),
            Err(SpiffeIdError::EmptySegment { index: 2 })
        );
        let long = "a".repeat(MAX_ID_LEN);
        assert!(matches!(
            SpiffeId::from_segments(&td, &[&long]),
            Err(SpiffeIdError::TooLong { .. })
        ));
    }

    #[test]
    fn wrong_scheme() {
        assert!(matches!(
            err("https://tradepulse/x"),
            SpiffeIdError::WrongScheme { .. }
        ));
        assert!(matches!(
            err("spiffe:/tradepulse/x"),
            SpiffeIdError::WrongScheme { .. }
        ));
        assert!(matches!(
            err("tradepulse/x"),
            SpiffeIdError::WrongScheme { .. }
        ));
        assert_eq!(err(""), SpiffeIdError::Empty);
    }

    #[test]
    fn uppercase_scheme() {
        assert!(matches!(
            err("SPIFFE://tradepulse/x"),
            SpiffeIdError::SchemeNotLowercase { .. }
        ));
        assert!(matches!(
            err("Spiffe://tradepulse/x"),
            SpiffeIdError::SchemeNotLowercase { .. }
        ));
    }

    #[test]
    fn empty_trust_domain() {
        assert_eq!(err("spiffe://"), SpiffeIdError::EmptyTrustDomain);
        assert_eq!(err("spiffe:///path"), SpiffeIdError::EmptyTrustDomain);
    }

    #[test]
    fn uppercase_trust_domain() {
        let e = err("spiffe://Foo/bar");
        assert_eq!(
            e,
            SpiffeIdError::TrustDomainBadChar {
                td: "Foo".into(),
                ch: 'F'
            }
        );
        assert_eq!(
            e.to_string(),
            "trust domain \"Foo\" has character 'F': expected lowercase letters, digits, '.', '-', '_'"
        );
    }

    #[test]
    fn trust_domain_with_port() {
        assert!(matches!(
            err("spiffe://tradepulse:8443/x"),
            SpiffeIdError::TrustDomainHasPort { .. }
        ));
    }

    #[test]
    fn trust_domain_with_userinfo() {
        assert!(matches!(
            err("spiffe://admin@tradepulse/x"),
            SpiffeIdError::TrustDomainHasUserinfo { .. }
        ));
        assert!(matches!(
            err("spiffe://admin:pw@tradepulse/x"),
            SpiffeIdError::TrustDomainHasUserinfo { .. }
        ));
    }

    #[test]
    fn percent_encoding_anywhere() {
        assert!(matches!(
            err("spiffe://trade%70ulse/x"),
            SpiffeIdError::PercentEncoded { .. }
        ));
        assert!(matches!(
            err("spiffe://tradepulse/a%2Fb"),
            SpiffeIdError::PercentEncoded { .. }
        ));
    }

    #[test]
    fn empty_segment() {
        assert_eq!(
            err("spiffe://tradepulse/prod//optimizer"),
            SpiffeIdError::EmptySegment { index: 2 }
        );
        assert_eq!(
            err("spiffe://tradepulse//x"),
            SpiffeIdError::EmptySegment { index: 1 }
        );
    }

    #[test]
    fn dot_segments() {
        assert_eq!(
            err("spiffe://tradepulse/./x"),
            SpiffeIdError::DotSegment {
                index: 1,
                segment: ".".into()
            }
        );
        let e = err("spiffe://tradepulse/prod/../x");
        assert_eq!(
            e,
            SpiffeIdError::DotSegment {
                index: 2,
                segment: "..".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "path segment 2 is \"..\": segments must not be \".\" or \"..\""
        );
        // Dots inside a segment are fine.
        assert!(SpiffeId::parse("spiffe://tradepulse/.../a.b").is_ok());
    }

    #[test]
    fn trailing_slash() {
        assert!(matches!(
            err("spiffe://tradepulse/"),
            SpiffeIdError::TrailingSlash { .. }
        ));
        assert!(matches!(
            err("spiffe://tradepulse/prod/"),
            SpiffeIdError::TrailingSlash { .. }
        ));
    }

    #[test]
    fn bad_character_in_path() {
        for (s, ch) in [
            ("spiffe://tradepulse/prod/strat egy", ' '),
            ("spiffe://tradepulse/prod/a+b", '+'),
            ("spiffe://tradepulse/prod/caf\u{e9}", '\u{e9}'),
            ("spiffe://tradepulse/prod/a\nb", '\n'),
        ] {
            match err(s) {
                SpiffeIdError::PathBadChar {
                    index: 2, ch: c, ..
                } => assert_eq!(c, ch),
                other => panic!("{s:?}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn query_and_fragment() {
        assert!(matches!(
            err("spiffe://tradepulse/x?a=b"),
            SpiffeIdError::Query { .. }
        ));
        assert!(matches!(
            err("spiffe://tradepulse?x"),
            SpiffeIdError::Query { .. }
        ));
        assert!(matches!(
            err("spiffe://tradepulse/x#frag"),
            SpiffeIdError::Fragment { .. }
        ));
    }

    #[test]
    fn over_long_id() {
        let base = "spiffe://tradepulse/";
        let at_limit = format!("{base}{}", "a".repeat(MAX_ID_LEN - base.len()));
        assert!(SpiffeId::parse(&at_limit).is_ok());
        let over = format!("{at_limit}a");
        assert_eq!(
            err(&over),
            SpiffeIdError::TooLong {
                len: MAX_ID_LEN + 1
            }
        );
    }

    #[test]
    fn over_long_trust_domain() {
        let at_limit = "a".repeat(MAX_TRUST_DOMAIN_LEN);
        assert!(SpiffeId::parse(&format!("spiffe://{at_limit}/x")).is_ok());
        let over = "a".repeat(MAX_TRUST_DOMAIN_LEN + 1);
        assert_eq!(
            err(&format!("spiffe://{over}/x")),
            SpiffeIdError::TrustDomainTooLong {
                len: MAX_TRUST_DOMAIN_LEN + 1
            }
        );
    }

    #[test]
    fn messages_are_one_line_and_bounded() {
        let hostile = format!("spiffe://Evil\n{}", "x".repeat(3000));
        for e in [
            err(&hostile),
            err("spiffe://tradepulse/a\nb"),
            err("SPIFFE://x\ny"),
        ] {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "{msg}");
            assert!(msg.len() < 300, "{msg}");
            assert!(
                msg.contains(": expected") || msg.contains(": segments"),
                "{msg}"
            );
        }
    }

    #[test]
    fn serde_round_trips_and_validates() {
        let id = SpiffeId::parse("spiffe://tradepulse/prod/x").unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"spiffe://tradepulse/prod/x\"");
        assert_eq!(serde_json::from_str::<SpiffeId>(&json).unwrap(), id);
        let bad = serde_json::from_str::<SpiffeId>("\"spiffe://tradepulse/../x\"");
        assert!(bad.is_err_and(|e| e.to_string().contains("must not be")));
        let td: TrustDomain = serde_json::from_str("\"tradepulse\"").unwrap();
        assert_eq!(serde_json::to_string(&td).unwrap(), "\"tradepulse\"");
        assert!(serde_json::from_str::<TrustDomain>("\"Trade\"").is_err());
    }

    #[test]
    fn ordering_groups_by_trust_domain() {
        let mut ids: Vec<SpiffeId> = ["spiffe://b/a", "spiffe://a/z", "spiffe://a"]
            .iter()
            .map(|s| SpiffeId::parse(s).unwrap())
            .collect();
        ids.sort();
        let sorted: Vec<String> = ids.iter().map(ToString::to_string).collect();
        assert_eq!(sorted, ["spiffe://a", "spiffe://a/z", "spiffe://b/a"]);
    }
}
