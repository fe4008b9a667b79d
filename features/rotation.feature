@rotation
Feature: Certificate rotation without downtime
  TradePulse runbook: "Workload certificates rotate every 12 hours", "Validate that workloads receive
  new certificates via istioctl proxy-config secret". A new workload certificate reaches the sidecar
  without a restart, and not one request fails while it does.

  @live @lab
  Scenario Outline: <profile> · a workload certificate rotates under traffic
    Given the profile "<profile>"
    And the manifests configured for it
    And the lab mesh is running for it
    When the lab CA rotates the certificate of a callee while an allowed caller keeps calling it
    Then the sidecar serves the new certificate and no call failed

    @each-profile
    Examples:
      | profile |

  # Lab-CA profiles: the sidecars hold SVIDs of the profile's TTL scaled down for the lab
  # (MESHPROOF_LAB_TTL_SCALE, default 1:4320: 12 h → 10 s), and the lab's renewal task re-issues each
  # one half-way through its lifetime (Istio's grace period ratio 0.5), delivered by an SDS directory
  # swap; the renewed serial, SAN and validity are read back from the sidecar's admin /certs, like
  # `istioctl proxy-config secret`, and every renewal of the run must have been at half-life.
  # SPIRE profiles: SPIRE's agent renews on its own schedule, which is reported, not asserted.
  @live @lab @slow
  Scenario Outline: <profile> · workload certificates renew before they expire, under traffic
    Given the profile "<profile>"
    And the manifests configured for it
    And the lab mesh is running for it
    When an allowed caller keeps calling a callee until the callee's certificate is renewed
    Then it was renewed on schedule, before it expired, and no call failed

    @each-profile
    Examples:
      | profile |
