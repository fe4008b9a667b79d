//! Leaf matchers, built from Istio values exactly as istiod builds them (istio/istio
//! `pilot/pkg/security/authz/matcher`), each able to both *match* a request value with Envoy's
//! semantics and *render* itself as Envoy proto3 JSON. Sharing one definition is what keeps
//! [`super::evaluate`] and [`super::envoy::envoy_rbac`] from drifting apart.

use std::net::IpAddr;

use serde_json::{Value as Json, json};

pub use super::regex::Regex;
use super::regex::quote_meta;

/// Envoy `type.matcher.v3.StringMatcher` (the subset istiod emits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Regex(Regex),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StringMatcher {
    pub pattern: StringMatch,
    /// ASCII case-insensitive; no effect on regexes (as in Envoy).
    pub ignore_case: bool,
}

impl StringMatcher {
    fn new(pattern: StringMatch) -> Self {
        StringMatcher {
            pattern,
            ignore_case: false,
        }
    }

    pub fn regex(source: &str) -> Result<Self, String> {
        Regex::new(source).map(|r| StringMatcher::new(StringMatch::Regex(r)))
    }

    pub fn matches(&self, text: &str) -> bool {
        // Compared in place, byte by byte: this runs for every rule of every request decided.
        let same = |a: &[u8], b: &[u8]| {
            if self.ignore_case {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        let bytes = text.as_bytes();
        match &self.pattern {
            StringMatch::Exact(v) => same(bytes, v.as_bytes()),
            StringMatch::Prefix(v) => {
                bytes.len() >= v.len() && same(&bytes[..v.len()], v.as_bytes())
            }
            StringMatch::Suffix(v) => {
                bytes.len() >= v.len() && same(&bytes[bytes.len() - v.len()..], v.as_bytes())
            }
            StringMatch::Regex(r) => r.is_full_match(text),
        }
    }

    pub fn to_json(&self) -> Json {
        let mut out = match &self.pattern {
            StringMatch::Exact(v) => json!({ "exact": v }),
            StringMatch::Prefix(v) => json!({ "prefix": v }),
            StringMatch::Suffix(v) => json!({ "suffix": v }),
            StringMatch::Regex(r) => json!({ "safe_regex": { "regex": r.as_str() } }),
        };
        if self.ignore_case {
            out["ignore_case"] = json!(true);
        }
        out
    }
}

impl std::fmt::Display for StringMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.pattern {
            StringMatch::Exact(v) => write!(f, "exact {v:?}"),
            StringMatch::Prefix(v) => write!(f, "prefix {v:?}"),
            StringMatch::Suffix(v) => write!(f, "suffix {v:?}"),
            StringMatch::Regex(r) => write!(f, "regex {:?}", r.as_str()),
        }?;
        if self.ignore_case {
            f.write_str(" (any case)")?;
        }
        Ok(())
    }
}

/// istiod's `StringMatcherWithPrefix`: `*` → regex `.+`; `*x` → suffix (or, with a prefix, the
/// regex `<prefix>.*x`, unescaped as istiod writes it); `x*` → prefix; else exact.
pub fn istio_string(value: &str, prefix: &str) -> Result<StringMatcher, String> {
    if value == "*" {
        return StringMatcher::regex(".+");
    }
    if let Some(suffix) = value.strip_prefix('*') {
        if prefix.is_empty() {
            return Ok(StringMatcher::new(StringMatch::Suffix(suffix.to_owned())));
        }
        return StringMatcher::regex(&format!("{prefix}.*{suffix}"));
    }
    if let Some(start) = value.strip_suffix('*') {
        return Ok(StringMatcher::new(StringMatch::Prefix(format!(
            "{prefix}{start}"
        ))));
    }
    Ok(StringMatcher::new(StringMatch::Exact(format!(
        "{prefix}{value}"
    ))))
}

/// The regex istiod writes for a principal value, if it writes one other than `.+`.
pub fn principal_regex(value: &str) -> Option<String> {
    (value != "*")
        .then(|| value.strip_prefix('*'))
        .flatten()
        .map(|suffix| format!("spiffe://.*{suffix}"))
}

/// istiod's namespace regex, matched against the peer's full `spiffe://` URI.
pub fn namespace_regex(value: &str) -> Option<String> {
    Some(format!(".*/ns/{}/.*", value.replace('*', ".*")))
}

/// `principals` value → matcher on `authenticated.principal_name`.
pub fn principal(value: &str) -> Result<StringMatcher, String> {
    istio_string(value, "spiffe://")
}

/// `namespaces` value → regex on `authenticated.principal_name`.
pub fn namespace(value: &str) -> Result<StringMatcher, String> {
    StringMatcher::regex(&format!(".*/ns/{}/.*", value.replace('*', ".*")))
}

/// `serviceAccounts` value (`sa` or `ns/sa`) → regex on `authenticated.principal_name`.
pub fn service_account(policy_namespace: &str, value: &str) -> Result<StringMatcher, String> {
    let (ns, sa) = value.split_once('/').unwrap_or((policy_namespace, value));
    StringMatcher::regex(&format!("spiffe://.+/ns/{ns}/(.+/|)sa/{sa}(/.+)?"))
}

/// Envoy `config.route.v3.HeaderMatcher` (the subset istiod emits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderMatcher {
    pub name: String,
    pub pattern: HeaderMatch,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderMatch {
    Present,
    String(StringMatcher),
    Regex(Regex),
}

impl HeaderMatcher {
    /// `value` is every value of the header joined with `,` (as Envoy matches it), or `None`.
    pub fn matches(&self, value: Option<&str>) -> bool {
        match (&self.pattern, value) {
            (_, None) => false,
            (HeaderMatch::Present, Some(_)) => true,
            (HeaderMatch::String(m), Some(v)) => m.matches(v),
            (HeaderMatch::Regex(r), Some(v)) => r.is_full_match(v),
        }
    }

    pub fn to_json(&self) -> Json {
        match &self.pattern {
            HeaderMatch::Present => json!({ "name": self.name, "present_match": true }),
            HeaderMatch::String(m) => json!({ "name": self.name, "string_match": m.to_json() }),
            HeaderMatch::Regex(r) => {
                json!({ "name": self.name, "safe_regex_match": { "regex": r.as_str() } })
            }
        }
    }
}

/// istiod's `HeaderMatcher` (methods, `request.headers[...]`): `*` = present, `*x` suffix,
/// `x*` prefix, else exact; case-sensitive.
pub fn header(name: &str, value: &str) -> HeaderMatcher {
    HeaderMatcher {
        name: name.to_owned(),
        pattern: header_pattern(value, false),
    }
}

/// istiod's `HostMatcher` on `:authority`: like [`header`] but case-insensitive.
pub fn host(value: &str) -> HeaderMatcher {
    HeaderMatcher {
        name: ":authority".into(),
        pattern: header_pattern(value, true),
    }
}

fn header_pattern(value: &str, ignore_case: bool) -> HeaderMatch {
    let pattern = if value == "*" {
        return HeaderMatch::Present;
    } else if let Some(s) = value.strip_prefix('*') {
        StringMatch::Suffix(s.to_owned())
    } else if let Some(p) = value.strip_suffix('*') {
        StringMatch::Prefix(p.to_owned())
    } else {
        StringMatch::Exact(value.to_owned())
    };
    HeaderMatch::String(StringMatcher {
        pattern,
        ignore_case,
    })
}

/// istiod's inline-header matcher: the value must be one element of the comma-joined list.
pub fn inline_header(name: &str, value: &str) -> Result<HeaderMatcher, String> {
    let regex = if value == "*" {
        return Ok(HeaderMatcher {
            name: name.to_owned(),
            pattern: HeaderMatch::Present,
        });
    } else if let Some(s) = value.strip_prefix('*') {
        format!(".*{}", quote_meta(s))
    } else if let Some(p) = value.strip_suffix('*') {
        format!("{}.*", quote_meta(p))
    } else {
        quote_meta(value)
    };
    let r = format!("^{regex}$|^{regex},.*|.*,{regex},.*|.*,{regex}$");
    Regex::new(&r).map(|re| HeaderMatcher {
        name: name.to_owned(),
        pattern: HeaderMatch::Regex(re),
    })
}

/// Envoy `config.core.v3.CidrRange`; a bare address is a /32 (IPv4) or /128 (IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub address: IpAddr,
    pub prefix_len: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let address: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix_len = match len {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|n| *n <= max && l.chars().all(|c| c.is_ascii_digit()))
                .ok_or_else(|| format!("prefix length {l:?} is not 0-{max}"))?,
        };
        Ok(Cidr {
            address,
            prefix_len,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |a: IpAddr| -> (u128, u32) {
            match a {
                IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, 32),
                IpAddr::V6(v6) => (u128::from(v6), 128),
            }
        };
        let ((net, fam_a), (addr, fam_b)) = (bits(self.address), bits(ip));
        if fam_a != fam_b {
            return false;
        }
        let len = u32::from(self.prefix_len);
        if len == 0 {
            return true;
        }
        // IPv4 sits in the top 32 bits, so one mask of the top `len` bits serves both families.
        let mask = u128::MAX << (128 - len.min(128));
        net & mask == addr & mask
    }

    pub fn to_json(self) -> Json {
        json!({ "address_prefix": self.address.to_string(), "prefix_len": self.prefix_len })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

/// A port as Istio writes it: decimal digits only, 0-65535.
pub fn parse_port(text: &str) -> Result<u16, String> {
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_digit()) {
        return Err("not a decimal port number".into());
    }
    text.parse::<u16>()
        .map_err(|_| "port is larger than 65535".into())
}

const MATCH_ONE: &str = "{*}";
const MATCH_ANY: &str = "{**}";

/// Whether a path uses Istio's `{*}` / `{**}` templates.
pub fn is_path_template(path: &str) -> bool {
    path.contains(MATCH_ONE) || path.contains(MATCH_ANY)
}

/// Istio's `CheckValidPathTemplate` for one path.
pub fn check_path_template(path: &str) -> Result<(), String> {
    let template = is_path_template(path);
    let mut found_any = false;
    for glob in path.trim_matches('/').split('/') {
        if (glob == MATCH_ONE || glob == MATCH_ANY) && found_any {
            return Err("{**} must be the last operator".into());
        }
        if glob == MATCH_ONE {
            continue;
        }
        if glob == MATCH_ANY {
            found_any = true;
            continue;
        }
        if glob.contains(['{', '}']) {
            return Err("'{' or '}' outside a {*} / {**} template".into());
        }
        let literal = |c: char| c.is_ascii_alphanumeric() || "-._~%!$&'()+,;:@=".contains(c);
        if template && (glob.is_empty() || !glob.chars().all(literal)) {
            return Err(format!("segment {glob:?} is not a valid path literal"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_string_forms() {
        let p = principal("cluster.local/ns/default/sa/curl").expect("ok");
        assert_eq!(
            p.to_json(),
            json!({"exact": "spiffe://cluster.local/ns/default/sa/curl"})
        );
        assert!(p.matches("spiffe://cluster.local/ns/default/sa/curl"));
        let p = principal("cluster.local/ns/default/*").expect("ok");
        assert_eq!(
            p.to_json(),
            json!({"prefix": "spiffe://cluster.local/ns/default/"})
        );
        let p = principal("*/sa/curl").expect("ok");
        assert_eq!(
            p.to_json(),
            json!({"safe_regex": {"regex": "spiffe://.*/sa/curl"}})
        );
        assert!(p.matches("spiffe://td/ns/x/sa/curl"));
        let p = principal("*").expect("ok");
        assert!(p.matches("spiffe://anything"));
        let path = istio_string("/quotes/*", "").expect("ok");
        assert_eq!(path.to_json(), json!({"prefix": "/quotes/"}));
        assert!(path.matches("/quotes/1"));
        assert!(!path.matches("/quotesXYZ"));
        assert!(!path.matches("/quotes"));
        let path = istio_string("*.png", "").expect("ok");
        assert_eq!(path.to_json(), json!({"suffix": ".png"}));
    }

    #[test]
    fn hosts_ignore_case_headers_do_not() {
        let h = host("Example.com");
        assert!(h.matches(Some("example.COM")));
        assert!(!h.matches(Some("example.com:8080")));
        assert_eq!(
            h.to_json(),
            json!({"name": ":authority", "string_match": {"exact": "Example.com", "ignore_case": true}})
        );
        let m = header(":method", "GET");
        assert!(m.matches(Some("GET")));
        assert!(!m.matches(Some("get")));
        assert!(!m.matches(None));
        assert!(header("x", "*").matches(Some("")));
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.1.0.0/16").expect("ok");
        assert!(c.contains("10.1.2.3".parse().expect("ip")));
        assert!(!c.contains("10.2.0.1".parse().expect("ip")));
        assert!(!c.contains("::1".parse().expect("ip")));
        let c = Cidr::parse("1.2.3.4").expect("ok");
        assert_eq!(c.prefix_len, 32);
        assert!(Cidr::parse("1.2.3.4/33").is_err());
        assert!(Cidr::parse("nope").is_err());
        assert!(
            Cidr::parse("0.0.0.0/0")
                .expect("ok")
                .contains("8.8.8.8".parse().expect("ip"))
        );
        assert!(
            Cidr::parse("fd00::/8")
                .expect("ok")
                .contains("fd12::1".parse().expect("ip"))
        );
    }

    #[test]
    fn ports_and_templates() {
        assert_eq!(parse_port("8080"), Ok(8080));
        assert!(parse_port("+80").is_err());
        assert!(parse_port("70000").is_err());
        assert!(check_path_template("/a/{*}/b/{**}").is_ok());
        assert!(check_path_template("/{**}/b").is_ok());
        assert!(check_path_template("/{**}/{*}").is_err());
        assert!(check_path_template("/a/{x}").is_err());
        assert!(check_path_template("/quotes/*").is_ok());
    }
}
