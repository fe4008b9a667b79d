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
