//! Typed readings of SPIRE's CLI output (`-output json`, which is protojson with proto field
//! names and every field present), plus the few pretty outputs that have no JSON form.
//!
//! # Contract
//!
//! Pure functions from text to data; nothing here runs a process. Every parser either returns
//! complete data or a reason naming what was missing, never a partial guess. protojson writes
//! 64-bit integers as strings; both forms are accepted. Bytes fields are standard base64.
//!
//! Inputs have already passed through the lab's redaction (join tokens replaced by labels), so
//! nothing parsed here can carry a secret onward.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

/// A registration entry as `spire-server entry show` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// SPIRE's entry ID (what `entry delete -entryID` takes).
    pub id: String,
    pub spiffe_id: String,
    /// The agent (or node alias) the entry is scoped to. A node alias made by
    /// `token generate -spiffeID` has the agent's own ID as parent, and a
    /// `spiffe_id:<agent ID>` selector.
    pub parent_id: String,
    /// `type:value`, e.g. `unix:uid:21000`, sorted.
    pub selectors: Vec<String>,
    /// The X.509-SVID TTL the entry asks for; `None` means the server default.
    pub x509_svid_ttl: Option<Duration>,
    /// Whether the entry is for a downstream SPIRE server.
    pub downstream: bool,
    /// Whether the ID may call the server's management APIs.
    pub admin: bool,
}

/// An attested agent as `spire-server agent list` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AgentInfo {
    /// The agent's SPIFFE ID, with any join token in it replaced by the lab's label for it.
    pub spiffe_id: String,
    pub attestation_type: String,
    pub x509svid_serial_number: String,
    /// When the agent's own SVID expires; an agent that stopped renewing shows a past instant.
    #[serde(serialize_with = "ser_time")]
    pub x509svid_expires_at: Option<OffsetDateTime>,
    pub banned: bool,
    pub can_reattest: bool,
    pub agent_version: String,
    pub selectors: Vec<String>,
}

impl AgentInfo {
    /// True when the agent's SVID is past its expiry at `now` (it stopped renewing).
    pub fn expired_at(&self, now: OffsetDateTime) -> bool {
        self.x509svid_expires_at.is_some_and(|t| t <= now)
    }
}

/// One local X.509 authority slot (`localauthority x509 show` and the mutating commands).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuthorityState {
    /// The CA certificate's Subject Key Identifier, lowercase hex.
    pub authority_id: String,
    #[serde(serialize_with = "ser_time")]
    pub expires_at: Option<OffsetDateTime>,
}

/// `spire-server localauthority x509 show`: which authority signs, which waits, which retired.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AuthorityStates {
    pub active: Option<AuthorityState>,
    pub prepared: Option<AuthorityState>,
    pub old: Option<AuthorityState>,
}

/// One root in the trust bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BundleAuthority {
    #[serde(skip)]
    pub der: Vec<u8>,
    /// Subject Key Identifier of the certificate, lowercase hex (SPIRE's authority ID).
    pub subject_key_id: Option<String>,
    pub sha256: String,
    pub tainted: bool,
}

/// `spire-server bundle show`: the trust domain's X.509 roots and their taint flags.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BundleInfo {
    pub trust_domain: String,
    pub x509_authorities: Vec<BundleAuthority>,
    pub sequence_number: u64,
}

impl BundleInfo {
    pub fn contains(&self, authority_id: &str) -> bool {
        self.authority(authority_id).is_some()
    }

    pub fn authority(&self, authority_id: &str) -> Option<&BundleAuthority> {
        self.x509_authorities
            .iter()
            .find(|a| a.subject_key_id.as_deref() == Some(authority_id))
    }
}

fn ser_time<S: serde::Serializer>(t: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
    use time::format_description::well_known::Rfc3339;
    match t.and_then(|t| t.format(&Rfc3339).ok()) {
        Some(text) => s.serialize_some(&text),
        None => s.serialize_none(),
    }
}

/// Why a CLI output could not be read.
pub type ParseResult<T> = Result<T, String>;

#[derive(Deserialize)]
struct JsonId {
    trust_domain: String,
    #[serde(default)]
    path: String,
}

impl JsonId {
    fn uri(&self) -> String {
        format!("spiffe://{}{}", self.trust_domain, self.path)
    }
}

#[derive(Deserialize)]
struct JsonSelector {
    r#type: String,
    value: String,
}

#[derive(Deserialize)]
struct JsonEntry {
    id: String,
    spiffe_id: JsonId,
    parent_id: JsonId,
    #[serde(default)]
    selectors: Vec<JsonSelector>,
    #[serde(default)]
    x509_svid_ttl: Value,
    #[serde(default)]
    downstream: bool,
    #[serde(default)]
    admin: bool,
}

impl JsonEntry {
    fn into_entry(self) -> ParseResult<Entry> {
        let ttl = int_field(&self.x509_svid_ttl, "x509_svid_ttl")?;
        let mut selectors: Vec<String> = self
            .selectors
            .into_iter()
            .map(|s| format!("{}:{}", s.r#type, s.value))
            .collect();
        selectors.sort();
        Ok(Entry {
            id: self.id,
            spiffe_id: self.spiffe_id.uri(),
            parent_id: self.parent_id.uri(),
            selectors,
            x509_svid_ttl: u64::try_from(ttl)
                .ok()
                .filter(|s| *s > 0)
                .map(Duration::from_secs),
            downstream: self.downstream,
            admin: self.admin,
        })
    }
}

#[derive(Deserialize)]
struct JsonStatus {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

/// protojson writes int64 as a string and int32 as a number; accept both (and absence as 0).
fn int_field(value: &Value, name: &str) -> ParseResult<i64> {
    match value {
        Value::Null => Ok(0),
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("{name}: {n} is not an integer")),
        Value::String(s) => s
            .parse()
            .map_err(|_| format!("{name}: {s:?} is not an integer")),
        other => Err(format!("{name}: expected an integer, got {other}")),
    }
}

fn unix_time(value: &Value, name: &str) -> ParseResult<Option<OffsetDateTime>> {
    let secs = int_field(value, name)?;
    if secs == 0 {
        return Ok(None);
    }
    OffsetDateTime::from_unix_timestamp(secs)
        .map(Some)
        .map_err(|e| format!("{name}: {secs}: {e}"))
}

fn json(text: &str) -> ParseResult<Value> {
    serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))
}

fn field<T: for<'de> Deserialize<'de>>(value: &Value, name: &str) -> ParseResult<T> {
    let raw = value
        .get(name)
        .ok_or_else(|| format!("no {name:?} field"))?;
    T::deserialize(raw).map_err(|e| format!("{name}: {e}"))
}

/// `entry show -output json` → entries, sorted by SPIFFE ID then ID.
pub fn parse_entries(text: &str) -> ParseResult<Vec<Entry>> {
    let value = json(text)?;
    // An empty result may come back as `"entries": []` or with the field omitted/null.
    let raw: Option<Vec<JsonEntry>> = match value.get("entries") {
        None | Some(Value::Null) => None,
        Some(_) => Some(field(&value, "entries")?),
    };
    let mut entries = raw
        .unwrap_or_default()
        .into_iter()
        .map(JsonEntry::into_entry)
        .collect::<ParseResult<Vec<_>>>()?;
    entries.sort_by(|a, b| (&a.spiffe_id, &a.id).cmp(&(&b.spiffe_id, &b.id)));
    Ok(entries)
}

/// `entry create -output json` → the created entry, or SPIRE's reason for refusing it.
pub fn parse_entry_created(text: &str) -> ParseResult<Entry> {
    let value = json(text)?;
    let results: Vec<Value> = field(&value, "results")?;
    let [result] = results.as_slice() else {
        return Err(format!("expected one result, got {}", results.len()));
    };
    check_status(result)?;
    let entry: JsonEntry = field(result, "entry")?;
    entry.into_entry()
}

/// `entry delete -output json` → the deleted entry's ID, or SPIRE's reason for refusing.
pub fn parse_entry_deleted(text: &str) -> ParseResult<String> {
    let value = json(text)?;
    let results: Vec<Value> = field(&value, "results")?;
    let [result] = results.as_slice() else {
        return Err(format!("expected one result, got {}", results.len()));
    };
    check_status(result)?;
    field(result, "id")
}

fn check_status(result: &Value) -> ParseResult<()> {
    let status: JsonStatus = field(result, "status")?;
    if status.code == 0 {
        Ok(())
    } else {
        Err(format!(
            "SPIRE refused it (code {}): {}",
            status.code, status.message
        ))
    }
}

#[derive(Deserialize)]
struct JsonAgent {
    id: JsonId,
    #[serde(default)]
    attestation_type: String,
    #[serde(default)]
    x509svid_serial_number: String,
    #[serde(default)]
    x509svid_expires_at: Value,
    #[serde(default)]
    selectors: Vec<JsonSelector>,
    #[serde(default)]
    banned: bool,
    #[serde(default)]
    can_reattest: bool,
    #[serde(default)]
    agent_version: String,
}

/// `agent list -output json` → agents, sorted by SPIFFE ID.
pub fn parse_agents(text: &str) -> ParseResult<Vec<AgentInfo>> {
    let value = json(text)?;
    let raw: Vec<JsonAgent> = match value.get("agents") {
        None | Some(Value::Null) => Vec::new(),
        Some(_) => field(&value, "agents")?,
    };
    let mut agents = raw
        .into_iter()
        .map(|a| {
            Ok(AgentInfo {
                spiffe_id: a.id.uri(),
                attestation_type: a.attestation_type,
                x509svid_serial_number: a.x509svid_serial_number,
                x509svid_expires_at: unix_time(&a.x509svid_expires_at, "x509svid_expires_at")?,
                banned: a.banned,
                can_reattest: a.can_reattest,
                agent_version: a.agent_version,
                selectors: a
                    .selectors
                    .into_iter()
                    .map(|s| format!("{}:{}", s.r#type, s.value))
                    .collect(),
            })
        })
        .collect::<ParseResult<Vec<_>>>()?;
    agents.sort_by(|a, b| a.spiffe_id.cmp(&b.spiffe_id));
    Ok(agents)
}

fn authority_state(value: Option<&Value>) -> ParseResult<Option<AuthorityState>> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let authority_id: String = match value.get("authority_id") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(other) => return Err(format!("authority_id: expected a string, got {other}")),
    };
    // protojson with EmitUnpopulated prints an empty slot as an all-default message.
    if authority_id.is_empty() {
        return Ok(None);
    }
    Ok(Some(AuthorityState {
        authority_id: authority_id.to_ascii_lowercase(),
        expires_at: unix_time(
            value.get("expires_at").unwrap_or(&Value::Null),
            "expires_at",
        )?,
    }))
}

/// `localauthority x509 show -output json`.
pub fn parse_authority_states(text: &str) -> ParseResult<AuthorityStates> {
    let value = json(text)?;
    Ok(AuthorityStates {
        active: authority_state(value.get("active"))?,
        prepared: authority_state(value.get("prepared"))?,
        old: authority_state(value.get("old"))?,
    })
}

/// `localauthority x509 prepare|activate|taint|revoke -output json`: the one authority the
/// command acted on, under `<verb>_authority` (`prepared_authority`, `activated_authority`, ...).
pub fn parse_authority_result(text: &str, key: &str) -> ParseResult<AuthorityState> {
    let value = json(text)?;
    authority_state(value.get(key))?.ok_or_else(|| format!("no {key:?} in the answer"))
}

/// `bundle show -output json`.
pub fn parse_bundle(text: &str) -> ParseResult<BundleInfo> {
    let value = json(text)?;
    let trust_domain: String = field(&value, "trust_domain")?;
    let raw: Vec<Value> = match value.get("x509_authorities") {
        None | Some(Value::Null) => Vec::new(),
        Some(_) => field(&value, "x509_authorities")?,
    };
    let mut x509_authorities = Vec::with_capacity(raw.len());
    for (i, authority) in raw.iter().enumerate() {
        let asn1: String = field(authority, "asn1")?;
        let der =
            base64_decode(&asn1).ok_or_else(|| format!("x509_authorities[{i}]: bad base64"))?;
        x509_authorities.push(BundleAuthority {
            subject_key_id: subject_key_id(&der),
            sha256: crate::pki::fingerprint_sha256(&der),
            der,
            tainted: authority
                .get("tainted")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        });
    }
    let sequence_number = int_field(
        value.get("sequence_number").unwrap_or(&Value::Null),
        "sequence_number",
    )?;
    Ok(BundleInfo {
        trust_domain,
        x509_authorities,
        sequence_number: u64::try_from(sequence_number).unwrap_or(0),
    })
}

/// `token generate -output json` → the token. The caller must treat it as a secret.
pub fn parse_token(text: &str) -> ParseResult<String> {
    let value = json(text)?;
    let token: String = field(&value, "value")?;
    if token.is_empty() {
        return Err("empty token".into());
    }
    Ok(token)
}

/// `spire-agent api fetch x509` (pretty form): the SPIFFE IDs in response order, which is the
/// order of the `svid.<n>.pem` files `-write` produced.
pub fn parse_fetched_ids(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("SPIFFE ID:"))
        .map(|rest| rest.trim().to_owned())
        .collect()
}

/// The Subject Key Identifier of a DER certificate, lowercase hex.
pub fn subject_key_id(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(ski) => Some(hex(ski.0)),
            _ => None,
        })
}

/// The Authority Key Identifier of a DER certificate (which CA signed it), lowercase hex.
pub fn authority_key_id(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| hex(k.0))
            }
            _ => None,
        })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// Standard base64 (RFC 4648 §4, padding optional), as protojson writes bytes.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' | b'-' => Some(62),
            b'/' | b'_' => Some(63),
            _ => None,
        }
    }
    let body = text.trim().trim_end_matches('=');
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for c in body.bytes() {
        acc = (acc << 6) | sextet(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
        }
    }
    // Leftover bits must be padding zeros; a lone sextet cannot encode a byte.
    if bits >= 6 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_known_vectors() {
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("Zg==").unwrap(), b"f");
        assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode("Zm9v").unwrap(), b"foo");
        assert_eq!(base64_decode("Zm9vYmFy").unwrap(), b"foobar");
        assert!(base64_decode("Z").is_none());
        assert!(base64_decode("Zm9v!").is_none());
    }

    #[test]
    fn entries_accept_protojson_shapes() {
        let text = r#"{"entries":[{"id":"e1","spiffe_id":{"trust_domain":"td","path":"/ns/a/sa/b"},
            "parent_id":{"trust_domain":"td","path":"/node/a"},
            "selectors":[{"type":"unix","value":"uid:21000"}],"x509_svid_ttl":20,
            "expires_at":"0","admin":false,"downstream":false}],"next_page_token":""}"#;
        let entries = parse_entries(text).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].spiffe_id, "spiffe://td/ns/a/sa/b");
        assert_eq!(entries[0].parent_id, "spiffe://td/node/a");
        assert_eq!(entries[0].selectors, ["unix:uid:21000"]);
        assert_eq!(entries[0].x509_svid_ttl, Some(Duration::from_secs(20)));
        assert!(
            parse_entries(r#"{"entries":[],"next_page_token":""}"#)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn create_reports_spire_refusal() {
        let text = r#"{"results":[{"status":{"code":6,"message":"similar entry already exists"},"entry":null}]}"#;
        let err = parse_entry_created(text).unwrap_err();
        assert!(err.contains("similar entry already exists"), "{err}");
    }

    #[test]
    fn agents_parse_string_int64() {
        let text = r#"{"agents":[{"id":{"trust_domain":"td","path":"/spire/agent/join_token/x"},
            "attestation_type":"join_token","x509svid_serial_number":"1","x509svid_expires_at":"1700000000",
            "selectors":[],"banned":false,"can_reattest":false,"agent_version":"1.15.3"}],"next_page_token":""}"#;
        let agents = parse_agents(text).unwrap();
        assert_eq!(agents[0].attestation_type, "join_token");
        assert_eq!(
            agents[0].x509svid_expires_at.unwrap().unix_timestamp(),
            1_700_000_000
        );
    }

    #[test]
    fn authority_slots_treat_empty_as_absent() {
        let text = r#"{"active":{"authority_id":"AB01","expires_at":"1700000000","upstream_authority_subject_key_id":""},
            "prepared":{"authority_id":"","expires_at":"0","upstream_authority_subject_key_id":""},"old":null}"#;
        let states = parse_authority_states(text).unwrap();
        assert_eq!(states.active.unwrap().authority_id, "ab01");
        assert!(states.prepared.is_none());
        assert!(states.old.is_none());
    }

    #[test]
    fn fetched_ids_in_order() {
        let text = "Received 2 svids after 1ms\n\nSPIFFE ID:\t\tspiffe://td/a\nSVID Valid After: x\n\nSPIFFE ID:\t\tspiffe://td/b\n";
        assert_eq!(parse_fetched_ids(text), ["spiffe://td/a", "spiffe://td/b"]);
    }
}
