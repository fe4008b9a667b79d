@pki
Feature: Mesh certificate authority (corporate root → mesh intermediate → workloads)
  TradePulse runbook: "A corporate PKI root issues an intermediate certificate dedicated to the mesh
  ... Intermediate certificates rotate annually, with overlapping validity ... Workload certificates
  rotate every 12 hours." The intermediate is Istio's plug-in CA (ca-cert.pem, ca-key.pem,
  root-cert.pem, cert-chain.pem).

  @checklist
  Scenario Outline: <profile> · the mesh CA hierarchy holds and fits the rotation policy
    Given the profile "<profile>"
    Then the mesh intermediate is a CA signed by the corporate root, and both are valid now
    And the intermediate's validity covers the rotation period plus the overlap
    And Istio's plug-in CA files are in place, the key readable by its owner only

    @each-profile
    Examples:
      | profile |

  # Proof of sensitivity: each fault a broken CA could produce is issued for real by the lab CA,
  # and the same check that passes healthy workloads must refuse it, for the right reason.
  @sensitivity @lab
  Scenario Outline: <profile> · <identity> with <fault> is refused
    Given the profile "<profile>"
    When the lab CA issues "<identity>" a certificate with the fault "<fault>"
    Then the workload certificate check refuses it, naming "<reason>"

    @each-service
    Examples:
      | profile | identity | fault                      | reason                         |
      |         |          | expired-intermediate       | intermediate 1, expired        |
      |         |          | not-yet-valid-intermediate | intermediate 1, not yet valid  |
      |         |          | expired-root               | root certificate, expired      |
      |         |          | foreign-root               | foreign or unknown root        |
      |         |          | wrong-trust-domain         | no trust bundle                |
      |         |          | ca-leaf                    | cA=true                        |
      |         |          | two-uri-sans               | exactly one URI SAN            |
      |         |          | no-uri-san                 | exactly one URI SAN            |
      |         |          | ttl-over-policy            | longer than the workload ttl   |
