//! Deliberately broken X509-SVID chains, for drills and for the validator's mutation tests.
//!
//! Every [`Chaos`] variant injects exactly one fault; everything else about the chain is what
//! [`Pki::issue_svid`] would produce (fresh P-256 keys, random serials, leaf-first chain, the
//! leaf valid now for the spec's `workload_ttl`), so a validator that rejects it can only be
//! rejecting it for the intended reason.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{
    IssuedCert, LeafShape, Pki, PkiError, PrivateKey, SvidFiles, files, make_intermediate,
    make_leaf, make_root, normalize, shift, to_time, window,
};

/// One fault to inject into an X509-SVID chain. Each variant's docs say which check must
/// catch it; [`Chaos::caught_by`] returns the same sentence for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Chaos {
    /// The intermediate's notAfter is one day in the past (it was valid for the 30 days before
    /// that); the leaf is current and correctly signed by it, and the root is the `Pki`'s own.
    /// Caught by checking the validity window of *every* chain certificate, not just the leaf.
    ExpiredIntermediate,
    /// The intermediate's notBefore is one day in the future; leaf and root are current.
    /// Caught by checking every chain certificate's notBefore, not only notAfter.
    NotYetValidIntermediate,
    /// A fresh root (same subject as the `Pki`'s) whose own notAfter is one day in the past;
    /// its intermediate (issued while it was valid, but outliving it) and the leaf are current.
    /// The returned [`ChaosSvid::root`] is that expired root. Caught by checking the trust
    /// anchor's own validity window — rustls/webpki treat an anchor as a bare name and key and
    /// miss this.
    ExpiredRoot,
    /// A complete, internally valid chain under a *different* root of the same trust domain,
    /// with the same subject name as the `Pki`'s root but another key. The returned
    /// [`ChaosSvid::root`] is that foreign root. Caught by verifying signatures up to a root in
    /// the configured trust bundle (matching issuer names alone is not enough).
    ForeignRoot,
    /// The leaf's only URI SAN is `spiffe://<td>.foreign/<path>` (see
    /// [`Chaos::foreign_trust_domain`]), signed by the `Pki`'s own intermediate. Caught by
    /// comparing the SVID's parsed trust domain with the expected one; the foreign domain has
    /// the expected one as a string prefix, so a `starts_with("spiffe://<td>")` check is caught
    /// too.
    WrongTrustDomain,
    /// The leaf has `basicConstraints` `cA=TRUE` (pathLen 0); its key usages are still the
    /// leaf's (no `keyCertSign`), so only the CA flag is wrong. Caught by requiring `cA=FALSE`
    /// on the leaf (X509-SVID §4.1).
    CaLeaf,
    /// The leaf carries two URI SANs: the requested SPIFFE ID and
    /// `spiffe://<td>/chaos/second-identity`. Caught by requiring exactly one URI SAN
    /// (X509-SVID §2).
    TwoUriSans,
    /// The leaf has no subjectAltName extension at all; the SPIFFE ID sits in the subject CN
    /// instead. Caught by requiring a URI SAN and never falling back to the CN.
    NoUriSan,
    /// The leaf is valid until `now + 2 × workload_ttl` (otherwise well-formed). Caught by
    /// checking the leaf's lifetime against the policy's workload TTL (runbook: 12 h).
    TtlOverPolicy,
}

impl Chaos {
    /// Every variant, in declaration order.
    pub const ALL: [Chaos; 9] = [
        Chaos::ExpiredIntermediate,
        Chaos::NotYetValidIntermediate,
        Chaos::ExpiredRoot,
        Chaos::ForeignRoot,
        Chaos::WrongTrustDomain,
        Chaos::CaLeaf,
        Chaos::TwoUriSans,
        Chaos::NoUriSan,
        Chaos::TtlOverPolicy,
    ];

    /// Kebab-case name, the same as the serde representation (`expired-root`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Chaos::ExpiredIntermediate => "expired-intermediate",
            Chaos::NotYetValidIntermediate => "not-yet-valid-intermediate",
            Chaos::ExpiredRoot => "expired-root",
            Chaos::ForeignRoot => "foreign-root",
            Chaos::WrongTrustDomain => "wrong-trust-domain",
            Chaos::CaLeaf => "ca-leaf",
            Chaos::TwoUriSans => "two-uri-sans",
            Chaos::NoUriSan => "no-uri-san",
            Chaos::TtlOverPolicy => "ttl-over-policy",
        }
    }

    /// The check a validator needs in order to reject this fault, as one sentence.
    pub fn caught_by(self) -> &'static str {
        match self {
            Chaos::ExpiredIntermediate => {
                "every certificate in the chain must be checked against its notAfter, not just the leaf"
            }
            Chaos::NotYetValidIntermediate => {
                "every certificate in the chain must be checked against its notBefore"
            }
            Chaos::ExpiredRoot => {
                "the trust anchor's own validity window must be checked (webpki/rustls do not)"
            }
            Chaos::ForeignRoot => {
                "signatures must verify up to a root in the configured trust bundle, not just match its name"
            }
            Chaos::WrongTrustDomain => {
                "the SVID's parsed trust domain must equal the expected trust domain exactly"
            }
            Chaos::CaLeaf => "the leaf must have basicConstraints cA=FALSE",
            Chaos::TwoUriSans => "the leaf must carry exactly one URI SAN",
            Chaos::NoUriSan => "the SPIFFE ID must come from a URI SAN, never from the subject CN",
            Chaos::TtlOverPolicy => "the leaf's lifetime must not exceed the policy's workload TTL",
        }
    }

    /// The trust domain [`Chaos::WrongTrustDomain`] uses instead of `trust_domain`:
    /// `<trust_domain>.foreign`.
    pub fn foreign_trust_domain(trust_domain: &str) -> String {
        format!("{trust_domain}.foreign")
    }
}

impl fmt::Display for Chaos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A leaf-first chain exhibiting one [`Chaos`] fault, with the leaf's key and the root the
/// chain really chains to.
#[derive(Clone, Debug)]
pub struct ChaosSvid {
    chaos: Chaos,
    uri_sans: Vec<String>,
    leaf: IssuedCert,
    intermediate: IssuedCert,
    root: IssuedCert,
    chain_pem: String,
    key: PrivateKey,
}

impl ChaosSvid {
    /// The injected fault.
    pub fn chaos(&self) -> Chaos {
        self.chaos
    }
    /// The URI SANs actually placed in the leaf (empty for [`Chaos::NoUriSan`]).
    pub fn uri_sans(&self) -> &[String] {
        &self.uri_sans
    }
    /// The leaf.
    pub fn leaf(&self) -> &IssuedCert {
        &self.leaf
    }
    /// The intermediate that signed the leaf.
    pub fn intermediate(&self) -> &IssuedCert {
        &self.intermediate
    }
    /// The root that really signed the intermediate: the `Pki`'s own root, except for
    /// [`Chaos::ExpiredRoot`] and [`Chaos::ForeignRoot`].
    pub fn root(&self) -> &IssuedCert {
        &self.root
    }
    /// Leaf then intermediate, DER.
    pub fn chain_der(&self) -> Vec<&[u8]> {
        vec![self.leaf.der(), self.intermediate.der()]
    }
    /// Leaf then intermediate, PEM.
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }
    /// The leaf's private key.
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }
    /// Writes the chain in Istio's `/etc/certs` layout like [`write_svid`](super::write_svid),
    /// with [`ChaosSvid::root`] as `root-cert.pem`.
    pub fn write_to(&self, dir: &Path, name: &str) -> Result<SvidFiles, PkiError> {
        files::write_workload(dir, name, &self.chain_pem, &self.key, self.root.pem())
    }
}

impl Pki {
    /// Issues a chain for `spiffe_id` (which must be in this trust domain, as for
    /// [`Pki::issue_svid`]) exhibiting `chaos`. See [`Chaos`] for what each variant does.
    pub fn issue_chaos(
        &self,
        chaos: Chaos,
        spiffe_id: &str,
        now: OffsetDateTime,
    ) -> Result<ChaosSvid, PkiError> {
        let now = normalize(now);
        let path = self.spiffe_path(spiffe_id)?;
        let spec = &self.spec;
        let (org, td) = (spec.organization.as_str(), spec.trust_domain.as_str());
        let what = format!("{chaos} leaf for {spiffe_id}");
        let day = time::Duration::DAY;

        let foreign_uri = format!("spiffe://{}/{path}", Chaos::foreign_trust_domain(td));
        let second_uri = format!("spiffe://{td}/chaos/second-identity");
        let (not_before, not_after) = window(now, spec.workload_ttl, &what)?;
        let mut shape = LeafShape {
            uris: vec![spiffe_id],
            common_name: None,
            ca: false,
            not_before,
            not_after,
        };
        let mut root = Arc::clone(&self.root);
        let mut intermediate = Arc::clone(&self.intermediate);
        let inter_validity = to_time(spec.intermediate_validity, "mesh intermediate")?;

        match chaos {
            Chaos::ExpiredIntermediate => {
                let what = "expired mesh intermediate";
                intermediate = Arc::new(make_intermediate(
                    &self.root,
                    org,
                    td,
                    shift(now, -30 * day, what)?,
                    shift(now, -day, what)?,
                    what,
                )?);
            }
            Chaos::NotYetValidIntermediate => {
                let what = "not-yet-valid mesh intermediate";
                let not_before = shift(now, day, what)?;
                intermediate = Arc::new(make_intermediate(
                    &self.root,
                    org,
                    td,
                    not_before,
                    shift(not_before, inter_validity, what)?,
                    what,
                )?);
            }
            Chaos::ExpiredRoot => {
                let what = "expired corporate root";
                let expired = make_root(
                    org,
                    shift(now, -30 * day, what)?,
                    shift(now, -day, what)?,
                    what,
                )?;
                let what = "mesh intermediate under the expired root";
                intermediate = Arc::new(make_intermediate(
                    &expired,
                    org,
                    td,
                    shift(now, -2 * day, what)?,
                    shift(now, inter_validity, what)?,
                    what,
                )?);
                root = Arc::new(expired);
            }
            Chaos::ForeignRoot => {
                let what = "foreign corporate root";
                let (nb, na) = window(now, spec.root_validity, what)?;
                let foreign = make_root(org, nb, na, what)?;
                let what = "mesh intermediate under the foreign root";
                let (nb, na) = window(now, spec.intermediate_validity, what)?;
                intermediate = Arc::new(make_intermediate(&foreign, org, td, nb, na, what)?);
                root = Arc::new(foreign);
            }
            Chaos::WrongTrustDomain => shape.uris = vec![&foreign_uri],
            Chaos::CaLeaf => shape.ca = true,
            Chaos::TwoUriSans => shape.uris.push(&second_uri),
            Chaos::NoUriSan => {
                shape.uris.clear();
                shape.common_name = Some(spiffe_id);
            }
            Chaos::TtlOverPolicy => {
                let twice = to_time(spec.workload_ttl, &what)?
                    .checked_mul(2)
                    .ok_or_else(|| PkiError::InvalidLifetime {
                        what: what.clone(),
                        reason: "2 × workload_ttl overflows".to_owned(),
                    })?;
                shape.not_after = shift(now, twice, &what)?;
            }
        }

        let (leaf, key) = make_leaf(&intermediate, org, &shape, &what)?;
        Ok(ChaosSvid {
            chaos,
            uri_sans: shape.uris.iter().map(|u| (*u).to_owned()).collect(),
            chain_pem: format!("{}{}", leaf.pem(), intermediate.cert.pem()),
            leaf,
            intermediate: intermediate.cert.clone(),
            root: root.cert.clone(),
            key,
        })
    }
}
