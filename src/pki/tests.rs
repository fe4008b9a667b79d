//! Tests parse everything the PKI produces with x509-parser and check it independently.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use time::OffsetDateTime;
use time::macros::datetime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::pem::Pem;

use super::*;

const TD: &str = "tradepulse.internal";
const ID: &str = "spiffe://tradepulse.internal/ns/trading/sa/order-router";
const NOW: OffsetDateTime = datetime!(2025-06-01 12:00:00 UTC);
const HOUR: Duration = Duration::from_secs(3600);

fn spec() -> CaSpec {
    CaSpec::runbook(TD, "TradePulse")
}

fn pki() -> Pki {
    match Pki::generate(&spec(), NOW) {
        Ok(p) => p,
        Err(e) => panic!("generate: {e}"),
    }
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).expect("parses");
    assert!(rest.is_empty(), "trailing bytes");
    cert
}

/// The runbook's skew allowance, pinned here rather than derived from `CLOCK_SKEW`.
fn skew() -> time::Duration {
    assert_eq!(CLOCK_SKEW, Duration::from_secs(300));
    time::Duration::minutes(5)
}

fn tdur(d: Duration) -> time::Duration {
    time::Duration::try_from(d).expect("duration")
}

/// `child` names `parent` as issuer and its signature verifies with `parent`'s key.
fn assert_signed_by(child: &[u8], parent: &[u8]) {
    let (c, p) = (parse(child), parse(parent));
    assert_eq!(
        c.issuer().as_raw(),
        p.subject().as_raw(),
        "issuer/subject link"
    );
    c.verify_signature(Some(p.public_key()))
        .expect("signature verifies with the parent's key");
}

fn assert_not_signed_by(child: &[u8], other: &[u8]) {
    let (c, o) = (parse(child), parse(other));
    assert!(
        c.verify_signature(Some(o.public_key())).is_err(),
        "signature must not verify with an unrelated key"
    );
}

fn uri_sans(cert: &X509Certificate<'_>) -> Vec<String> {
    match cert.subject_alternative_name().expect("SAN parses") {
        None => vec![],
        Some(san) => san
            .value
            .general_names
            .iter()
            .filter_map(|g| match g {
                GeneralName::URI(u) => Some((*u).to_owned()),
                _ => None,
            })
            .collect(),
    }
}

fn all_sans(cert: &X509Certificate<'_>) -> usize {
    cert.subject_alternative_name()
        .expect("SAN parses")
        .map_or(0, |s| s.value.general_names.len())
}

fn common_name(cert: &X509Certificate<'_>) -> Option<String> {
    cert.subject()
        .iter_common_name()
        .next()
        .map(|cn| cn.as_str().expect("CN is a string").to_owned())
}

fn is_ca_with_pathlen(cert: &X509Certificate<'_>) -> (bool, Option<u32>, bool) {
    let bc = cert
        .basic_constraints()
        .expect("bc parses")
        .expect("basicConstraints present");
    (bc.value.ca, bc.value.path_len_constraint, bc.critical)
}

fn key_ids(cert: &X509Certificate<'_>) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let (mut ski, mut aki) = (None, None);
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => ski = Some(k.0.to_vec()),
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                aki = a.key_identifier.as_ref().map(|k| k.0.to_vec());
            }
            _ => {}
        }
    }
    (ski, aki)
}

fn pem_blocks(pem: &str) -> Vec<Vec<u8>> {
    Pem::iter_from_buffer(pem.as_bytes())
        .map(|p| {
            let p = p.expect("PEM block parses");
            assert_eq!(p.label, "CERTIFICATE");
            p.contents
        })
        .collect()
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).expect("read")
}

#[test]
fn hierarchy_links_and_signatures_verify() {
    let pki = pki();
    let svid = pki.issue_svid(ID, HOUR, NOW).expect("svid");
    let (root, inter, leaf) = (pki.root().der(), pki.intermediate().der(), svid.der());

    let r = parse(root);
    assert_eq!(
        r.subject().as_raw(),
        r.issuer().as_raw(),
        "root is self-issued"
    );
    r.verify_signature(None).expect("root is self-signed");
    assert_signed_by(inter, root);
    assert_signed_by(leaf, inter);
    assert_not_signed_by(leaf, root);
    assert_not_signed_by(inter, inter);

    // AKI of each child = SKI of its issuer, so chains build across rotations.
    let (root_ski, _) = key_ids(&r);
    let (inter_ski, inter_aki) = key_ids(&parse(inter));
    let (_, leaf_aki) = key_ids(&parse(leaf));
    assert!(root_ski.is_some() && inter_ski.is_some());
    assert_eq!(inter_aki, root_ski);
    assert_eq!(leaf_aki, inter_ski);

    // The Svid carries the same root and intermediate as the Pki.
    assert_eq!(svid.root(), pki.root());
    assert_eq!(svid.intermediate(), pki.intermediate());
}

#[test]
fn root_and_intermediate_are_constrained_cas() {
    let pki = pki();
    let r = parse(pki.root().der());
    let i = parse(pki.intermediate().der());

    assert_eq!(is_ca_with_pathlen(&r), (true, Some(1), true));
    assert_eq!(is_ca_with_pathlen(&i), (true, Some(0), true));
    for cert in [&r, &i] {
        let ku = cert
            .key_usage()
            .expect("ku parses")
            .expect("keyUsage present");
        assert!(ku.value.key_cert_sign() && ku.value.crl_sign());
        assert!(!ku.value.digital_signature() && !ku.value.key_encipherment());
        assert!(cert.extended_key_usage().expect("eku parses").is_none());
    }
    assert_eq!(
        common_name(&r).as_deref(),
        Some("TradePulse Corporate Root CA")
    );
    assert_eq!(
        common_name(&i).as_deref(),
        Some("TradePulse Mesh Intermediate CA")
    );
    assert_eq!(all_sans(&r), 0, "root has no SAN");
    assert_eq!(uri_sans(&i), vec![format!("spiffe://{TD}")]);
    assert_eq!(all_sans(&i), 1);
}

#[test]
fn leaf_is_an_x509_svid() {
    let pki = pki();
    let svid = pki.issue_svid(ID, HOUR, NOW).expect("svid");
    let l = parse(svid.der());

    let (ca, path_len, _) = is_ca_with_pathlen(&l);
    assert!(!ca && path_len.is_none(), "leaf is CA:FALSE");
    assert!(!l.is_ca());
    let ku = l.key_usage().expect("ku").expect("keyUsage present");
    assert!(ku.critical, "keyUsage is critical");
    assert!(ku.value.digital_signature() && ku.value.key_encipherment());
    assert!(!ku.value.key_cert_sign() && !ku.value.crl_sign());
    let eku = l.extended_key_usage().expect("eku").expect("EKU present");
    assert!(eku.value.server_auth && eku.value.client_auth);
    assert!(!eku.value.any && eku.value.other.is_empty());
    assert_eq!(uri_sans(&l), vec![ID.to_owned()]);
    assert_eq!(all_sans(&l), 1, "exactly one SAN, and it is the URI");
    assert_eq!(svid.spiffe_id(), ID);
}

#[test]
fn leaf_validity_is_requested_ttl_plus_backdated_skew() {
    let pki = pki();
    let later = NOW + time::Duration::minutes(17);
    for ttl in [Duration::from_secs(1), HOUR, spec().workload_ttl] {
        let svid = pki.issue_svid(ID, ttl, later).expect("svid");
        let v = parse(svid.der()).validity().clone();
        assert_eq!(
            v.not_after.to_datetime() - later,
            tdur(ttl),
            "notAfter = now + ttl"
        );
        assert_eq!(
            later - v.not_before.to_datetime(),
            skew(),
            "notBefore = now - skew"
        );
        assert_eq!(svid.not_after(), v.not_after.to_datetime());
        assert_eq!(svid.not_before(), v.not_before.to_datetime());
        assert!(svid.cert().is_valid_at(later));
        assert!(
            !svid
                .cert()
                .is_valid_at(later + tdur(ttl) + time::Duration::SECOND)
        );
    }
    // Sub-second parts of `now` are dropped, not rounded up past the requested TTL.
    let ragged = NOW + time::Duration::milliseconds(999);
    let svid = pki.issue_svid(ID, HOUR, ragged).expect("svid");
    assert_eq!(svid.not_after(), NOW + tdur(HOUR));
}

#[test]
fn ca_windows_start_before_now_and_last_their_validity() {
    let pki = pki();
    let s = spec();
    for (cert, validity) in [
        (pki.root(), s.root_validity),
        (pki.intermediate(), s.intermediate_validity),
    ] {
        let v = parse(cert.der()).validity().clone();
        assert_eq!(v.not_before.to_datetime(), NOW - skew());
        assert_eq!(v.not_after.to_datetime(), NOW + tdur(validity));
        assert_eq!(cert.not_before(), v.not_before.to_datetime());
        assert_eq!(cert.not_after(), v.not_after.to_datetime());
    }
}

#[test]
fn serials_are_random_128_bit_positive_and_reported_as_hex() {
    let pki = pki();
    let mut seen = std::collections::HashSet::new();
    let mut certs = vec![pki.root().clone(), pki.intermediate().clone()];
    for _ in 0..25 {
        certs.push(pki.issue_svid(ID, HOUR, NOW).expect("svid").cert().clone());
    }
    for cert in &certs {
        let raw = parse(cert.der()).raw_serial().to_vec();
        assert_eq!(raw.len(), SERIAL_BYTES, "16 content octets");
        assert!(raw[0] != 0 && raw[0] < 0x80, "positive, minimal encoding");
        assert_eq!(cert.serial_hex(), cert::hex(&raw));
        assert_eq!(cert.serial_hex().len(), 2 * SERIAL_BYTES);
        assert!(
            cert.serial_hex()
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_eq!(serial_hex(cert.der()).expect("serial"), cert.serial_hex());
        assert_eq!(parse_serial_hex(cert.serial_hex()), Some(raw));
        assert!(
            seen.insert(cert.serial_hex().to_owned()),
            "serials are unique"
        );
    }
    assert_eq!(parse_serial_hex("0A:ff"), Some(vec![0x0a, 0xff]));
    assert_eq!(parse_serial_hex("abc"), None);
    assert_eq!(parse_serial_hex("zz"), None);
    assert!(serial_hex(b"not a certificate").is_err());
}

#[test]
fn svid_chain_is_leaf_then_intermediate_and_key_matches() {
    let pki = pki();
    let svid = pki.issue_svid(ID, HOUR, NOW).expect("svid");
    let blocks = pem_blocks(svid.chain_pem());
    assert_eq!(
        blocks,
        vec![svid.der().to_vec(), pki.intermediate().der().to_vec()]
    );
    assert_eq!(svid.chain_der(), vec![svid.der(), pki.intermediate().der()]);
    assert_eq!(pem_blocks(svid.pem()), vec![svid.der().to_vec()]);
    assert_eq!(
        svid.key().public_key_spki_der(),
        parse(svid.der()).public_key().raw.to_vec(),
        "the key belongs to the leaf"
    );
    let other = pki.issue_svid(ID, HOUR, NOW).expect("svid");
    assert_ne!(
        other.key().public_key_spki_der(),
        svid.key().public_key_spki_der()
    );
    assert_eq!(
        pem_blocks(&pki.ca_chain_pem()),
        vec![pki.intermediate().der().to_vec(), pki.root().der().to_vec()]
    );
}

#[test]
fn private_keys_never_print() {
    let pki = pki();
    let svid = pki.issue_svid(ID, HOUR, NOW).expect("svid");
    let key = svid.key();
    assert_eq!(format!("{key:?}"), "PrivateKey(redacted)");
    assert_eq!(format!("{key}"), "PrivateKey(redacted)");
    assert_eq!(format!("{key:#?}"), "PrivateKey(redacted)");

    let secret = key.secret_pem();
    assert!(secret.starts_with("-----BEGIN PRIVATE KEY-----"));
    let secret_body: String = secret.lines().nth(1).expect("body line").to_owned();
    let chaos = pki.issue_chaos(Chaos::CaLeaf, ID, NOW).expect("chaos");
    for printed in [
        format!("{svid:?}"),
        format!("{svid:#?}"),
        format!("{pki:?}"),
        format!("{chaos:?}"),
        format!("{:?}", svid.cert()),
    ] {
        assert!(!printed.contains("PRIVATE KEY"), "{printed}");
        assert!(!printed.contains(&secret_body));
        assert!(!printed.contains(&chaos.key().secret_pem()));
    }
    assert!(format!("{svid:?}").contains("PrivateKey(redacted)"));
    // The explicit accessor round-trips to the same key.
    let reparsed = rcgen::KeyPair::from_pem(&secret).expect("PKCS#8 PEM");
    assert_eq!(
        rcgen::PublicKeyData::subject_public_key_info(&reparsed),
        key.public_key_spki_der()
    );
    assert_eq!(reparsed.serialize_der(), key.secret_pkcs8_der());
}

#[test]
fn plugin_ca_files_have_istio_layout_and_key_is_0600() {
    let pki = pki();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cacerts");
    let files = pki.write_plugin_ca(&dir).expect("write");

    assert_eq!(files.ca_cert, dir.join("ca-cert.pem"));
    assert_eq!(files.ca_key, dir.join("ca-key.pem"));
    assert_eq!(files.root_cert, dir.join("root-cert.pem"));
    assert_eq!(files.cert_chain, dir.join("cert-chain.pem"));
    assert_eq!(
        pem_blocks(&read(&files.ca_cert)),
        vec![pki.intermediate().der().to_vec()]
    );
    assert_eq!(
        pem_blocks(&read(&files.root_cert)),
        vec![pki.root().der().to_vec()]
    );
    assert_eq!(
        pem_blocks(&read(&files.cert_chain)),
        vec![pki.intermediate().der().to_vec(), pki.root().der().to_vec()]
    );
    let key = rcgen::KeyPair::from_pem(&read(&files.ca_key)).expect("ca-key.pem is a key");
    assert_eq!(
        rcgen::PublicKeyData::subject_public_key_info(&key),
        parse(pki.intermediate().der()).public_key().raw.to_vec(),
        "ca-key.pem is the intermediate's key"
    );
    assert_eq!(mode(&files.ca_key), 0o600);
    for public in [&files.ca_cert, &files.root_cert, &files.cert_chain] {
        assert_eq!(
            mode(public) & 0o022,
            0,
            "no group/other write on {}",
            public.display()
        );
    }
    // No temp files left behind.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf8"))
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
}

#[test]
fn rewriting_replaces_a_world_readable_key_file_with_a_0600_one() {
    let pki = pki();
    let tmp = tempfile::tempdir().expect("tempdir");
    let key_path = tmp.path().join("ca-key.pem");
    std::fs::write(&key_path, "stale").expect("write");
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).expect("chmod");

    let files = pki.write_plugin_ca(tmp.path()).expect("write");
    assert_eq!(mode(&files.ca_key), 0o600);
    assert!(read(&files.ca_key).starts_with("-----BEGIN PRIVATE KEY-----"));
}

#[test]
fn write_svid_uses_etc_certs_layout() {
    let pki = pki();
    let svid = pki.issue_svid(ID, HOUR, NOW).expect("svid");
    let tmp = tempfile::tempdir().expect("tempdir");
    let files = write_svid(tmp.path(), "order-router", &svid).expect("write");

    assert_eq!(files.dir, tmp.path().join("order-router"));
    assert_eq!(files.cert_chain, files.dir.join("cert-chain.pem"));
    assert_eq!(files.key, files.dir.join("key.pem"));
    assert_eq!(files.root_cert, files.dir.join("root-cert.pem"));
    assert_eq!(read(&files.cert_chain), svid.chain_pem());
    assert_eq!(read(&files.key), svid.key().secret_pem());
    assert_eq!(read(&files.root_cert), pki.root().pem());
    assert_eq!(mode(&files.key), 0o600);

    // Bad names are refused; the escape target lies inside the tempdir so a regression
    // cannot write outside it.
    let certs = tmp.path().join("certs");
    for bad in ["", ".", "..", "../escape", "a/b"] {
        match write_svid(&certs, bad, &svid) {
            Err(PkiError::InvalidName { name, .. }) => assert_eq!(name, bad),
            other => panic!("{bad:?} accepted: {other:?}"),
        }
    }
    assert!(!tmp.path().join("escape").exists());
    assert!(!certs.join("a").exists());
}

#[test]
fn io_errors_name_the_path() {
    let pki = pki();
    let tmp = tempfile::tempdir().expect("tempdir");
    let blocker = tmp.path().join("not-a-dir");
    std::fs::write(&blocker, "").expect("write");
    let err = pki
        .write_plugin_ca(&blocker.join("cacerts"))
        .expect_err("must fail");
    assert!(matches!(err, PkiError::Io { .. }));
    assert!(err.to_string().contains("not-a-dir"), "{err}");
    assert!(!err.to_string().contains('\n'));
}

#[test]
fn new_intermediate_shares_root_with_fresh_key_and_serial() {
    let pki = pki();
    let rotation_at = NOW + time::Duration::days(335);
    let rotated = pki
        .new_intermediate(Duration::from_secs(365 * 86_400), rotation_at)
        .expect("rotate");

    assert!(rotated.shares_root_with(&pki));
    assert_eq!(rotated.root(), pki.root());
    assert_ne!(
        rotated.intermediate().serial_hex(),
        pki.intermediate().serial_hex()
    );
    let (old, new) = (
        parse(pki.intermediate().der()),
        parse(rotated.intermediate().der()),
    );
    assert_ne!(old.public_key().raw, new.public_key().raw, "fresh key");
    assert_eq!(old.subject().as_raw(), new.subject().as_raw());
    assert_signed_by(rotated.intermediate().der(), pki.root().der());
    assert_eq!(is_ca_with_pathlen(&new), (true, Some(0), true));
    // Overlap: both intermediates are valid at the rotation instant.
    assert!(pki.intermediate().is_valid_at(rotation_at));
    assert!(rotated.intermediate().is_valid_at(rotation_at));
    // SVIDs from the rotated Pki chain to the new intermediate, not the old one.
    let svid = rotated.issue_svid(ID, HOUR, rotation_at).expect("svid");
    assert_signed_by(svid.der(), rotated.intermediate().der());
    assert_not_signed_by(svid.der(), pki.intermediate().der());
    assert_eq!(svid.root(), pki.root());
    // A clone also shares the root; an independent hierarchy does not.
    assert!(pki.clone().shares_root_with(&pki));
    assert!(
        !Pki::generate(&spec(), NOW)
            .expect("generate")
            .shares_root_with(&pki)
    );
    // An intermediate may not outlive the root.
    let err = pki
        .new_intermediate(Duration::from_secs(20 * 365 * 86_400), NOW)
        .expect_err("outlives root");
    assert!(matches!(err, PkiError::OutlivesIssuer { .. }), "{err}");
}

#[test]
fn well_formed_paths_refuse_bad_requests() {
    let pki = pki();
    for bad in [
        "spiffe://other.internal/ns/a/sa/b",
        "spiffe://tradepulse.internal/",
        "spiffe://tradepulse.internal",
        "spiffe://tradepulse.internal.evil/x",
        "https://tradepulse.internal/x",
        "spiffe://tradepulse.internal/ns/ü",
    ] {
        match pki.issue_svid(bad, HOUR, NOW) {
            Err(e @ PkiError::InvalidSpiffeId { .. }) => {
                assert!(e.to_string().contains(bad), "{e}");
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    assert!(matches!(
        pki.issue_svid(ID, Duration::ZERO, NOW),
        Err(PkiError::InvalidLifetime { .. })
    ));
    assert!(matches!(
        pki.issue_svid(ID, Duration::from_secs(400 * 86_400), NOW),
        Err(PkiError::OutlivesIssuer { .. })
    ));
    // Issuing "before" the intermediate exists would give a chain that is broken at birth.
    assert!(matches!(
        pki.issue_svid(ID, HOUR, NOW - time::Duration::HOUR),
        Err(PkiError::InvalidLifetime { .. })
    ));

    let mut s = spec();
    s.intermediate_validity = s.root_validity + HOUR;
    assert!(matches!(
        Pki::generate(&s, NOW),
        Err(PkiError::OutlivesIssuer { .. })
    ));
    for (field, mutate) in [
        (
            "trust_domain",
            (|s: &mut CaSpec| s.trust_domain = "Trade Pulse".into()) as fn(&mut CaSpec),
        ),
        ("trust_domain", |s| s.trust_domain.clear()),
        ("organization", |s| s.organization = "  ".into()),
        ("workload_ttl", |s| {
            s.workload_ttl = Duration::from_millis(500)
        }),
    ] {
        let mut s = spec();
        mutate(&mut s);
        match Pki::generate(&s, NOW) {
            Err(e @ PkiError::InvalidSpec { .. }) => assert!(e.to_string().contains(field), "{e}"),
            other => panic!("{field}: {other:?}"),
        }
    }
}

#[test]
fn fingerprint_is_lowercase_colon_free_sha256() {
    assert_eq!(
        fingerprint_sha256(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let pki = pki();
    let fp = pki.root().fingerprint_sha256();
    assert_eq!(fp, fingerprint_sha256(pki.root().der()));
    assert_eq!(fp.len(), 64);
    assert!(
        fp.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_ne!(fp, pki.intermediate().fingerprint_sha256());
}

fn chaos(c: Chaos) -> (Pki, ChaosSvid) {
    let pki = pki();
    let svid = pki.issue_chaos(c, ID, NOW).expect("chaos");
    (pki, svid)
}

#[test]
fn every_chaos_chain_is_internally_consistent() {
    let pki = pki();
    let mut names = std::collections::HashSet::new();
    for c in Chaos::ALL {
        let svid = pki.issue_chaos(c, ID, NOW).expect("chaos");
        assert_eq!(svid.chaos(), c);
        let chain = svid.chain_der();
        assert_eq!(
            chain,
            vec![svid.leaf().der(), svid.intermediate().der()],
            "{c}"
        );
        assert_eq!(
            pem_blocks(svid.chain_pem()),
            vec![chain[0].to_vec(), chain[1].to_vec()]
        );
        // The chain really chains: leaf ← intermediate ← returned root (self-signed).
        assert_signed_by(chain[0], chain[1]);
        assert_signed_by(chain[1], svid.root().der());
        parse(svid.root().der())
            .verify_signature(None)
            .expect("root self-signed");
        assert_eq!(
            svid.key().public_key_spki_der(),
            parse(chain[0]).public_key().raw.to_vec(),
            "{c}: key belongs to the leaf"
        );
        assert_eq!(uri_sans(&parse(chain[0])), svid.uri_sans(), "{c}");
        // Serde name, Display and name() agree and are unique.
        let json = serde_json::to_string(&c).expect("ser");
        assert_eq!(json, format!("\"{}\"", c.name()));
        assert_eq!(serde_json::from_str::<Chaos>(&json).expect("de"), c);
        assert_eq!(c.to_string(), c.name());
        assert!(!c.caught_by().is_empty());
        assert!(names.insert(c.name()));
        // Only the two root faults swap the root.
        let own_root = !matches!(c, Chaos::ExpiredRoot | Chaos::ForeignRoot);
        assert_eq!(svid.root() == pki.root(), own_root, "{c}");
    }
    assert!(
        pki.issue_chaos(Chaos::CaLeaf, "spiffe://elsewhere/x", NOW)
            .is_err()
    );
}

#[test]
fn chaos_expired_intermediate() {
    let (pki, s) = chaos(Chaos::ExpiredIntermediate);
    assert!(s.intermediate().not_after() < NOW);
    assert!(!s.intermediate().is_valid_at(NOW));
    assert!(s.leaf().is_valid_at(NOW) && s.root().is_valid_at(NOW));
    assert_eq!(s.root(), pki.root());
    assert_ne!(s.intermediate(), pki.intermediate());
    assert_eq!(
        is_ca_with_pathlen(&parse(s.intermediate().der())),
        (true, Some(0), true)
    );
}

#[test]
fn chaos_not_yet_valid_intermediate() {
    let (pki, s) = chaos(Chaos::NotYetValidIntermediate);
    assert!(s.intermediate().not_before() > NOW);
    assert!(
        s.intermediate().not_before() - NOW > skew(),
        "beyond any skew allowance"
    );
    assert!(s.leaf().is_valid_at(NOW) && s.root().is_valid_at(NOW));
    assert_eq!(s.root(), pki.root());
}

#[test]
fn chaos_expired_root_keeps_intermediate_and_leaf_current() {
    let (pki, s) = chaos(Chaos::ExpiredRoot);
    assert!(s.root().not_after() < NOW, "root notAfter is in the past");
    assert!(s.intermediate().is_valid_at(NOW) && s.leaf().is_valid_at(NOW));
    assert_ne!(s.root(), pki.root());
    let r = parse(s.root().der());
    assert_eq!(is_ca_with_pathlen(&r), (true, Some(1), true));
    assert_not_signed_by(s.intermediate().der(), pki.root().der());
}

#[test]
fn chaos_foreign_root_signs_the_chain_and_is_not_ours() {
    let (pki, s) = chaos(Chaos::ForeignRoot);
    assert_ne!(s.root(), pki.root());
    let (ours, theirs) = (parse(pki.root().der()), parse(s.root().der()));
    assert_ne!(ours.public_key().raw, theirs.public_key().raw);
    assert_eq!(
        ours.subject().as_raw(),
        theirs.subject().as_raw(),
        "same name, other key"
    );
    assert_signed_by(s.intermediate().der(), s.root().der());
    assert_not_signed_by(s.intermediate().der(), pki.root().der());
    assert_eq!(
        uri_sans(&parse(s.intermediate().der())),
        vec![format!("spiffe://{TD}")]
    );
    assert_eq!(s.uri_sans(), [ID.to_owned()]);
    assert!(s.root().is_valid_at(NOW) && s.intermediate().is_valid_at(NOW));
    assert!(s.leaf().is_valid_at(NOW));
}

#[test]
fn chaos_wrong_trust_domain_keeps_the_path() {
    let (pki, s) = chaos(Chaos::WrongTrustDomain);
    let expected = "spiffe://tradepulse.internal.foreign/ns/trading/sa/order-router";
    assert_eq!(uri_sans(&parse(s.leaf().der())), vec![expected.to_owned()]);
    assert!(!expected.starts_with(&format!("spiffe://{TD}/")));
    assert_eq!(
        Chaos::foreign_trust_domain(TD),
        "tradepulse.internal.foreign"
    );
    assert_signed_by(s.leaf().der(), pki.intermediate().der());
}

#[test]
fn chaos_ca_leaf_sets_only_the_ca_flag() {
    let (_, s) = chaos(Chaos::CaLeaf);
    let l = parse(s.leaf().der());
    let (ca, _, _) = is_ca_with_pathlen(&l);
    assert!(ca && l.is_ca());
    let ku = l.key_usage().expect("ku").expect("keyUsage");
    assert!(
        !ku.value.key_cert_sign(),
        "single fault: key usages stay leaf-like"
    );
    assert_eq!(uri_sans(&l), vec![ID.to_owned()]);
}

#[test]
fn chaos_two_uri_sans() {
    let (_, s) = chaos(Chaos::TwoUriSans);
    let uris = uri_sans(&parse(s.leaf().der()));
    assert_eq!(uris.len(), 2);
    assert_eq!(uris[0], ID);
    assert!(uris[1].starts_with(&format!("spiffe://{TD}/")) && uris[1] != ID);
}

#[test]
fn chaos_no_uri_san_puts_the_id_in_the_cn() {
    let (_, s) = chaos(Chaos::NoUriSan);
    let l = parse(s.leaf().der());
    assert!(
        l.subject_alternative_name().expect("parses").is_none(),
        "no SAN extension"
    );
    assert!(uri_sans(&l).is_empty() && s.uri_sans().is_empty());
    assert_eq!(common_name(&l).as_deref(), Some(ID));
}

#[test]
fn chaos_ttl_over_policy_is_twice_the_workload_ttl() {
    let (pki, s) = chaos(Chaos::TtlOverPolicy);
    let ttl = tdur(pki.spec().workload_ttl);
    assert_eq!(s.leaf().not_after() - NOW, ttl * 2);
    assert!(s.leaf().not_after() - s.leaf().not_before() > ttl + skew());
    // Other variants keep the policy TTL.
    let (_, ok) = chaos(Chaos::CaLeaf);
    assert_eq!(ok.leaf().not_after() - NOW, ttl);
}

#[test]
fn chaos_write_to_uses_the_chaos_root() {
    let (pki, s) = chaos(Chaos::ForeignRoot);
    let tmp = tempfile::tempdir().expect("tempdir");
    let files = s.write_to(tmp.path(), "impostor").expect("write");
    assert_eq!(read(&files.root_cert), s.root().pem());
    assert_ne!(read(&files.root_cert), pki.root().pem());
    assert_eq!(mode(&files.key), 0o600);
}

#[test]
fn pki_types_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Pki>();
    assert_send_sync::<Svid>();
    assert_send_sync::<ChaosSvid>();
    assert_send_sync::<PrivateKey>();
    assert_send_sync::<PkiError>();
}
